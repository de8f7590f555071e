"""``[plugins.otp]`` in ``stepup.toml``: code lifetime, send limits, SMTP and SMS gateway.

Any string may hold ``${NAME}`` to read it from the environment (passwords, API keys): the core
expands references when it reads ``stepup.toml`` (``stepup_core.config.expand_env``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import attrs

from stepup_core.config import StepUpConfig
from stepup_core.errors import ConfigError

PLUGIN_NAME = "otp"
SMTP_SECURITY = ("starttls", "tls", "none")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}
DEFAULT_SMS_BODY_TEMPLATE = '{"to": "{to}", "text": "Your {app} verification code is {code}"}'
DEFAULT_SMS_NOTICE_TEMPLATE = '{"to": "{to}", "text": "{text}"}'
SMS_PLACEHOLDERS = ("{to}", "{code}", "{app}")
def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be greater than 0, got {value!r}")


@attrs.frozen
class SmtpSettings:
    """``[plugins.otp.smtp]``: where and how to send email codes."""

    host: str
    #: The envelope and ``From`` address (``"Example <no-reply@example.com>"`` is fine).
    sender: str
    #: ``starttls`` (upgrade a plain connection, required), ``tls`` (implicit TLS, port 465) or
    #: ``none`` (no encryption; only for a relay on the same host).
    security: str = "starttls"
    #: Defaults to 587 for ``starttls``, 465 for ``tls``, 25 for ``none``.
    port: int | None = None
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    #: ``{app}`` is replaced by the application name.
    subject: str = "Your {app} verification code"
    #: PEM file of certificate authorities to trust besides the system ones (a private relay).
    tls_ca_file: str | None = None
    #: Check the server's certificate and host name. Turn off only for a local test relay.
    validate_certs: bool = True
    timeout: float = attrs.field(default=15.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.security not in SMTP_SECURITY:
            raise ValueError(f"security must be one of {', '.join(SMTP_SECURITY)}; got {self.security!r}")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both or neither")
        if self.username is not None and self.security == "none" and self.host not in LOOPBACK_HOSTS:
            raise ValueError(
                "a login over security = 'none' would send the password in clear text; "
                "use 'starttls' or 'tls' (plain logins are allowed only to localhost)"
            )
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"port must be between 1 and 65535, got {self.port}")
        if "@" not in self.sender:
            raise ValueError(f"sender must be an email address, got {self.sender!r}")

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_SMTP_PORTS[self.security]


@attrs.frozen
class HeaderSetting:
    """One HTTP header: ``{name = "Authorization", value = "Bearer ${SMS_TOKEN}"}``.

    ``${NAME}`` anywhere in ``value`` is read from the environment when the file is read.
    """

    name: str
    value: str = attrs.field(repr=False)


@attrs.frozen
class SmsGatewaySettings:
    """``[plugins.otp.sms_gateway]``: an HTTP endpoint that sends a text message.

    ``body_template`` is JSON. In every string inside it ``{to}`` becomes the E.164 number,
    ``{code}`` the code and ``{app}`` the application name; the result is posted as
    ``application/json``. Values are substituted after parsing, so they cannot break the JSON.
    ``notice_body_template`` is the same for security notices, with ``{text}`` (the notice)
    in place of ``{code}``.
    """

    url: str
    auth_header: HeaderSetting | None = None
    body_template: str = DEFAULT_SMS_BODY_TEMPLATE
    notice_body_template: str = DEFAULT_SMS_NOTICE_TEMPLATE
    timeout: float = attrs.field(default=10.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url must be an http(s) URL, got {self.url!r}")
        try:
            template = json.loads(self.body_template)
        except json.JSONDecodeError as exc:
            raise ValueError(f"body_template is not valid JSON: {exc}") from None
        if "{code}" not in json.dumps(template, ensure_ascii=False):
            raise ValueError("body_template must contain {code} in one of its strings")
        try:
            notice = json.loads(self.notice_body_template)
        except json.JSONDecodeError as exc:
            raise ValueError(f"notice_body_template is not valid JSON: {exc}") from None
        if "{text}" not in json.dumps(notice, ensure_ascii=False):
            raise ValueError("notice_body_template must contain {text} in one of its strings")

    def render_body(self, to: str, code: str, app: str) -> Any:
        values = {"{to}": to, "{code}": code, "{app}": app}
        return _substitute(json.loads(self.body_template), values)

    def render_notice_body(self, to: str, text: str, app: str) -> Any:
        values = {"{to}": to, "{text}": text, "{app}": app}
        return _substitute(json.loads(self.notice_body_template), values)


def _substitute(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, str):
        for placeholder, value in values.items():
            node = node.replace(placeholder, value)
        return node
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    if isinstance(node, dict):
        return {key: _substitute(item, values) for key, item in node.items()}
    return node


#: The channels codes can go over.
CHANNELS = ("email", "sms")


def _channels(instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    unknown = [c for c in value if c not in CHANNELS]
    if not value or unknown or len(set(value)) != len(value):
        raise ValueError(f"{attribute.name} must name one or both of {', '.join(CHANNELS)}, got {list(value)!r}")


@attrs.frozen
class OtpSettings:
    """``[plugins.otp]``."""

    #: The channels this server sends codes over. A channel left out is never used: its
    #: credentials are not offered for step-up and cannot be linked.
    channels: tuple[str, ...] = attrs.field(default=CHANNELS, validator=_channels)

    #: Seconds a code (and its challenge) stays valid.
    code_ttl: float = attrs.field(default=600.0, validator=_positive)
    #: At most one code per credential every this many seconds.
    resend_interval: float = attrs.field(default=30.0, validator=_positive)
    #: At most this many codes per credential per hour.
    max_sends_per_hour: int = attrs.field(default=10, validator=_positive)
    smtp: SmtpSettings | None = None
    sms_gateway: SmsGatewaySettings | None = None


def load_settings(config: StepUpConfig) -> OtpSettings:
    """``[plugins.otp]`` of ``config``; a bad key or value is a ConfigError naming it."""
    settings = config.plugin_section(PLUGIN_NAME, OtpSettings)
    if not isinstance(settings, OtpSettings):  # pragma: no cover - plugin_section guarantees it
        raise ConfigError("plugins.otp could not be read")
    return settings
