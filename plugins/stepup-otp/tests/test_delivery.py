"""Real delivery: SMTP to aiosmtpd on loopback, SMS to an aiohttp receiver on loopback."""

from __future__ import annotations

from typing import Any

import pytest
from stepup_otp import plugin as otp_plugin
from stepup_otp.delivery import SmsGatewaySender, SmtpSender

from stepup_core.config import StepUpConfig, config_from_mapping
from stepup_core.errors import ConfigError, DeliveryFailed
from stepup_core.models import CodeDelivery
from stepup_core.plugins import get_plugin_manager


def make_delivery(channel: str = "email", address: str = "jane@example.com", **kw: Any) -> CodeDelivery:
    fields: dict[str, Any] = {
        "channel": channel,
        "address": address,
        "code": "042917",
        "purpose": "stepUp",
        "expires_at": 1_800_000_600.0,
        "user_id": "u-1",
        "app_name": "Acme",
    }
    fields.update(kw)
    return CodeDelivery(**fields)


def otp_config(**section: Any) -> StepUpConfig:
    return config_from_mapping({"store": "memory:", "app_name": "Acme", "plugins": {"otp": section}})


def chosen_sender(delivery: CodeDelivery, config: StepUpConfig) -> Any:
    """What the core does: the first non-None ``stepup_deliver_code`` answer (a first-result hook)."""
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(otp_plugin, name="otp")
    return pm.hook.stepup_deliver_code(delivery=delivery, config=config)


# --- choosing a sender -----------------------------------------------------------------


def test_unconfigured_plugin_leaves_delivery_to_the_console_fallback() -> None:
    config = otp_config()
    assert chosen_sender(make_delivery("email"), config).name == "console"
    assert chosen_sender(make_delivery("sms", "+14155554567"), config).name == "console"


def test_each_channel_goes_to_its_configured_sender_only() -> None:
    smtp_only = otp_config(smtp={"host": "127.0.0.1", "sender": "no-reply@example.com"})
    assert isinstance(chosen_sender(make_delivery("email"), smtp_only), SmtpSender)
    assert chosen_sender(make_delivery("sms", "+14155554567"), smtp_only).name == "console"

    sms_only = otp_config(sms_gateway={"url": "https://sms.example.com/send"})
    assert isinstance(chosen_sender(make_delivery("sms", "+14155554567"), sms_only), SmsGatewaySender)
    assert chosen_sender(make_delivery("email"), sms_only).name == "console"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"smtp": {"host": "h", "sender": "a@example.com", "security": "ssl"}}, "security must be one of"),
        ({"smtp": {"host": "h", "sender": "a@example.com", "username": "u"}}, "username and password"),
        ({"smtp": {"host": "h", "sender": "nobody"}}, "sender must be an email address"),
        ({"smtp": {"host": "h", "sender": "a@example.com", "port": 70000}}, "port must be between"),
        ({"smtp": {"host": "h", "sender": "a@example.com", "colour": "red"}}, "plugins.otp.smtp.colour"),
        ({"sms_gateway": {"url": "ftp://sms.example.com"}}, "http(s) URL"),
        ({"sms_gateway": {"url": "https://sms.example.com", "body_template": "{to"}}, "not valid JSON"),
        ({"sms_gateway": {"url": "https://sms.example.com", "body_template": '{"to": "{to}"}'}}, "{code}"),
        ({"code_ttl": 0}, "code_ttl must be greater than 0"),
        (
            {"smtp": {"host": "smtp.example.com", "sender": "a@example.com", "security": "none",
                      "username": "u", "password": "p"}},
            "clear text",
        ),
        ({"smtp": {"host": "h", "sender": "a@example.com", "username": "u", "password": "${NOPE_UNSET}"}},
         "NOPE_UNSET is not set"),
    ],
)
def test_bad_configuration_is_a_config_error_naming_the_problem(
    section: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOPE_UNSET", raising=False)
    with pytest.raises(ConfigError) as caught:
        chosen_sender(make_delivery(), otp_config(**section))
    assert message in str(caught.value)


# --- SMTP ------------------------------------------------------------------------------


async def test_plain_smtp_delivers_a_text_and_html_message(smtp_server_factory: Any) -> None:
    server = smtp_server_factory("none")
    config = otp_config(
        smtp={"host": server.host, "port": server.port, "security": "none", "sender": "Acme <no-reply@acme.example>"}
    )
    sender = chosen_sender(make_delivery(), config)
    await sender.send(make_delivery())

    [mail] = server.messages
    assert mail.mail_from == "no-reply@acme.example"
    assert mail.rcpt_tos == ["jane@example.com"]
    assert mail.message["To"] == "jane@example.com"
    assert mail.message["From"] == "Acme <no-reply@acme.example>"
    assert mail.message["Subject"] == "Your Acme verification code"
    assert mail.message["Auto-Submitted"] == "auto-generated"
    assert mail.message["Message-ID"].endswith("@acme.example>")
    assert mail.message.get_content_type() == "multipart/alternative"
    assert mail.code() == "042917"
    assert "expires in 10 minutes" in mail.text()
    assert "expires in 10 minutes" in mail.html()
    assert server.handler.tls_sessions == [False]


async def test_code_ttl_and_purpose_show_in_the_message(smtp_server_factory: Any) -> None:
    server = smtp_server_factory("none")
    config = otp_config(
        code_ttl=300,
        smtp={"host": server.host, "port": server.port, "security": "none", "sender": "no-reply@acme.example",
              "subject": "{app}: confirm it is you"},
    )
    delivery = make_delivery(purpose="enrollment", app_name="<Acme & Co>")
    await chosen_sender(delivery, config).send(delivery)
    [mail] = server.messages
    assert mail.message["Subject"] == "<Acme & Co>: confirm it is you"
    assert "expires in 5 minutes" in mail.text()
    assert "confirm that this address belongs to you" in mail.text()
    assert "Your <Acme & Co> verification code" in mail.text()
    # The application name is escaped in the HTML body, never injected as markup.
    assert "Your &lt;Acme &amp; Co&gt; verification code" in mail.html()
    assert "<Acme" not in mail.html()


async def test_starttls_with_login_and_password_from_the_environment(
    smtp_server_factory: Any, tls_material: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server_factory("starttls", credentials=("mailer", "s3cret-pass"))
    monkeypatch.setenv("OTP_TEST_SMTP_PASSWORD", "s3cret-pass")
    config = otp_config(
        smtp={
            "host": "localhost",
            "port": server.port,
            "security": "starttls",
            "username": "mailer",
            "password": "${OTP_TEST_SMTP_PASSWORD}",
            "sender": "no-reply@acme.example",
            "tls_ca_file": str(tls_material.cert_file),
        }
    )
    sender = chosen_sender(make_delivery(), config)
    assert "s3cret-pass" not in repr(sender.settings)
    await sender.send(make_delivery())
    [mail] = server.messages
    assert mail.code() == "042917"
    assert server.handler.tls_sessions == [True]
    assert server.handler.logins == ["mailer"]


async def test_implicit_tls(smtp_server_factory: Any, tls_material: Any) -> None:
    server = smtp_server_factory("tls")
    config = otp_config(
        smtp={"host": "localhost", "port": server.port, "security": "tls", "sender": "no-reply@acme.example",
              "tls_ca_file": str(tls_material.cert_file)}
    )
    await chosen_sender(make_delivery(), config).send(make_delivery())
    [mail] = server.messages
    assert mail.code() == "042917"
    assert server.handler.tls_sessions == [True]


async def test_starttls_refuses_a_certificate_it_does_not_trust(smtp_server_factory: Any) -> None:
    server = smtp_server_factory("starttls")
    config = otp_config(
        smtp={"host": "localhost", "port": server.port, "security": "starttls", "sender": "no-reply@acme.example"}
    )
    with pytest.raises(DeliveryFailed) as caught:
        await chosen_sender(make_delivery(), config).send(make_delivery())
    assert "certificate" in str(caught.value).lower()
    assert server.messages == []


async def test_starttls_required_fails_against_a_server_without_it(smtp_server_factory: Any) -> None:
    server = smtp_server_factory("none")
    config = otp_config(
        smtp={"host": server.host, "port": server.port, "security": "starttls", "sender": "no-reply@acme.example"}
    )
    with pytest.raises(DeliveryFailed):
        await chosen_sender(make_delivery(), config).send(make_delivery())
    assert server.messages == []


async def test_validate_certs_off_accepts_an_untrusted_relay(smtp_server_factory: Any) -> None:
    server = smtp_server_factory("starttls")
    config = otp_config(
        smtp={"host": server.host, "port": server.port, "security": "starttls", "sender": "no-reply@acme.example",
              "validate_certs": False}
    )
    await chosen_sender(make_delivery(), config).send(make_delivery())
    assert len(server.messages) == 1


async def test_wrong_password_is_a_delivery_failure(smtp_server_factory: Any, tls_material: Any) -> None:
    server = smtp_server_factory("starttls", credentials=("mailer", "right"))
    config = otp_config(
        smtp={"host": "localhost", "port": server.port, "username": "mailer", "password": "wrong",
              "sender": "no-reply@acme.example", "tls_ca_file": str(tls_material.cert_file)}
    )
    with pytest.raises(DeliveryFailed) as caught:
        await chosen_sender(make_delivery(), config).send(make_delivery())
    assert "wrong" not in str(caught.value)
    assert server.messages == []


async def test_mail_server_down_is_a_clear_delivery_failure(unused_port: int) -> None:
    config = otp_config(
        smtp={"host": "127.0.0.1", "port": unused_port, "security": "none", "sender": "no-reply@acme.example",
              "timeout": 5}
    )
    with pytest.raises(DeliveryFailed) as caught:
        await chosen_sender(make_delivery(), config).send(make_delivery())
    error = caught.value
    assert error.code == "delivery_failed"
    assert error.status == 502
    assert f"127.0.0.1:{unused_port}" in error.message
    assert "j***@example.com" in error.message
    assert "jane@example.com" not in error.message
    assert "042917" not in error.message


# --- SMS gateway -----------------------------------------------------------------------


async def test_sms_gateway_receives_the_rendered_body_and_auth_header(
    sms_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTP_TEST_SMS_TOKEN", "tok-123")
    config = otp_config(
        sms_gateway={
            "url": sms_gateway.url,
            "auth_header": {"name": "Authorization", "value": "Bearer ${OTP_TEST_SMS_TOKEN}"},
            "body_template": '{"recipient": "{to}", "message": {"text": "{app} code: {code}", "tags": ["{app}"]},'
            ' "priority": 1}',
        }
    )
    delivery = make_delivery("sms", "+14155554567", app_name='Acme "Bank"')
    sender = chosen_sender(delivery, config)
    await sender.send(delivery)

    [request] = sms_gateway.requests
    assert request["headers"]["Authorization"] == "Bearer tok-123"
    assert request["content_type"] == "application/json"
    # Values are substituted inside the parsed JSON: a quote in the app name cannot break it.
    assert request["body"] == {
        "recipient": "+14155554567",
        "message": {"text": 'Acme "Bank" code: 042917', "tags": ['Acme "Bank"']},
        "priority": 1,
    }


async def test_sms_default_template(sms_gateway: Any) -> None:
    config = otp_config(sms_gateway={"url": sms_gateway.url})
    delivery = make_delivery("sms", "+14155554567")
    await chosen_sender(delivery, config).send(delivery)
    [request] = sms_gateway.requests
    assert request["body"] == {"to": "+14155554567", "text": "Your Acme verification code is 042917"}
    assert "Authorization" not in request["headers"]


@pytest.mark.parametrize("status", [400, 401, 500, 503, 302])
async def test_sms_gateway_error_status_is_a_delivery_failure(sms_gateway: Any, status: int) -> None:
    sms_gateway.status = status
    config = otp_config(sms_gateway={"url": sms_gateway.url})
    delivery = make_delivery("sms", "+14155554567")
    with pytest.raises(DeliveryFailed) as caught:
        await chosen_sender(delivery, config).send(delivery)
    assert f"HTTP {status}" in caught.value.message
    assert "+1******4567" in caught.value.message
    assert "042917" not in caught.value.message
    assert len(sms_gateway.requests) == 1


async def test_sms_gateway_unreachable_is_a_delivery_failure(unused_port: int) -> None:
    config = otp_config(sms_gateway={"url": f"http://127.0.0.1:{unused_port}/send", "timeout": 5})
    delivery = make_delivery("sms", "+14155554567")
    with pytest.raises(DeliveryFailed, match="could not be reached"):
        await chosen_sender(delivery, config).send(delivery)
