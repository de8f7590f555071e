"""Configuration errors name their key; registration stays cheap; the client half."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import stepup_social.plugin
from stepup_social.client import SocialClientMethod
from stepup_social.plugin import make_verifier

from stepup_core.client.method import Answer, ClientContext
from stepup_core.config import config_from_mapping
from stepup_core.errors import ConfigError, InvalidResponse, ValidationError
from stepup_core.models import Factor, Interaction
from stepup_core.plugins import get_plugin_manager

GOOD = {"issuer": "https://accounts.example.com", "client_id": "app"}


def verifier_for(providers: dict[str, Any], **social: Any) -> Any:
    return make_verifier(config_from_mapping({"plugins": {"social": {"providers": providers, **social}}}))


def test_a_provider_table_is_structured() -> None:
    verifier = verifier_for({"google": {**GOOD, "client_secret": "x", "scopes": ["openid", "email"]}})
    provider = verifier.settings.providers["google"]
    assert provider.effective_scopes() == ("openid", "email")
    assert (verifier.name, verifier.factor, verifier.interaction) == ("social", Factor.REAUTH, Interaction.REDIRECT)
    assert verifier.requires_challenge is True


def test_client_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPUP_TEST_GOOGLE_SECRET", "from-env")
    verifier = verifier_for({"google": {**GOOD, "client_secret": "${STEPUP_TEST_GOOGLE_SECRET}"}})
    assert verifier.settings.providers["google"].client_secret == "from-env"
    monkeypatch.delenv("STEPUP_TEST_GOOGLE_SECRET")
    with pytest.raises(ConfigError, match="STEPUP_TEST_GOOGLE_SECRET"):
        verifier_for({"google": {**GOOD, "client_secret": "${STEPUP_TEST_GOOGLE_SECRET}"}})


@pytest.mark.parametrize(
    ("providers", "social", "names"),
    [
        ({"g": {**GOOD, "colour": "blue"}}, {}, "colour"),
        ({"g": {"issuer": "https://a.example"}}, {}, "client_id"),
        ({"g": {**GOOD, "kind": "saml"}}, {}, "providers.g.kind"),
        ({"g": {**GOOD, "issuer": "http://accounts.example.com"}}, {}, "providers.g.issuer"),
        ({"g": {**GOOD, "issuer": "accounts.example.com"}}, {}, "providers.g.issuer"),
        ({"g": {"client_id": "app"}}, {}, "providers.g.issuer"),
        ({"g": {**GOOD, "token_endpoint": "https://a.example/token"}}, {}, "providers.g.token_endpoint"),
        ({"g": {**GOOD, "scopes": ["email"]}}, {}, "providers.g.scopes"),
        ({"g": {**GOOD, "algorithms": ["HS256"]}}, {}, "providers.g.algorithms"),
        ({"g": {**GOOD, "token_endpoint_auth": "private_key_jwt"}}, {}, "providers.g.token_endpoint_auth"),
        ({"Bad Name": GOOD}, {}, "providers.Bad Name"),
        (
            {
                "gh": {
                    "kind": "oauth2",
                    "client_id": "a",
                    "authorization_endpoint": "https://gh.example/authorize",
                    "token_endpoint": "https://gh.example/token",
                }
            },
            {},
            "providers.gh.userinfo_endpoint",
        ),
        ({"g": GOOD}, {"challenge_ttl": 0}, "challenge_ttl"),
        ({"g": GOOD}, {"auth_time_skew": -1}, "auth_time_skew"),
    ],
)
def test_bad_configuration_names_the_key(providers: dict[str, Any], social: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError) as failure:
        verifier_for(providers, **social)
    assert names in str(failure.value)


def test_plain_http_is_allowed_on_loopback_only() -> None:
    verifier_for({"dev": {**GOOD, "issuer": "http://127.0.0.1:5555"}})
    verifier_for({"dev": {**GOOD, "issuer": "http://localhost:5555"}})
    verifier_for({"dev": {**GOOD, "issuer": "http://[::1]:5555"}})
    with pytest.raises(ConfigError):
        verifier_for({"dev": {**GOOD, "issuer": "http://10.0.0.1:5555"}})


def test_registration_imports_no_provider_machinery() -> None:
    code = textwrap.dedent(
        """
        import sys
        from stepup_core.plugins import get_plugin_manager
        from stepup_core.config import config_from_mapping
        import stepup_social.plugin as plugin
        pm = get_plugin_manager(load_entrypoints=False)
        pm.register(plugin, name="social")
        found = []
        pm.hook.stepup_register_verifiers(register=found.append, config=config_from_mapping({}))
        pm.hook.stepup_register_client_methods(register=found.append)
        assert [type(f).__name__ for f in found] == ["SocialVerifier", "SocialClientMethod"], found
        heavy = sorted(m for m in ("joserfc", "aiohttp", "webbrowser", "stepup_social.providers") if m in sys.modules)
        print(",".join(heavy))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_plugin_registers_through_the_manager() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(stepup_social.plugin, name="social")
    methods: list[Any] = []
    pm.hook.stepup_register_client_methods(register=methods.append)
    assert [m.name for m in methods] == ["social"]
    assert methods[0].package == "stepup-social"


# --- the client half -------------------------------------------------------------------


class Silent:
    def __init__(self) -> None:
        self.told: list[str] = []

    async def choose(self, title: str, options: Any) -> int:
        raise AssertionError("not asked")

    async def ask_code(self, label: str) -> str:
        raise AssertionError("not asked")

    async def tell(self, message: str) -> None:
        self.told.append(message)


CHALLENGE = {
    "challengeId": "chl_1",
    "method": "social",
    "interaction": "redirect",
    "data": {"authorizationUrl": "https://accounts.example.com/authorize?state=abc", "provider": "google"},
}


async def test_answer_hands_the_url_to_open_url_and_completes_elsewhere() -> None:
    opened: list[str] = []
    answer = await SocialClientMethod().answer(CHALLENGE, ClientContext(Silent(), {"open_url": opened.append}))
    assert answer == Answer(completed_elsewhere=True)
    assert opened == ["https://accounts.example.com/authorize?state=abc"]


async def test_open_url_may_be_async() -> None:
    opened: list[str] = []

    async def open_url(url: str) -> None:
        opened.append(url)

    await SocialClientMethod().answer(CHALLENGE, ClientContext(Silent(), {"open_url": open_url}))
    assert opened == [CHALLENGE["data"]["authorizationUrl"]]


@pytest.mark.parametrize("data", [{}, {"authorizationUrl": "javascript:alert(1)"}, {"authorizationUrl": 5}])
async def test_a_challenge_without_a_usable_url_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(InvalidResponse):
        await SocialClientMethod().answer({**CHALLENGE, "data": data}, ClientContext(Silent(), {"open_url": print}))


async def test_linking_needs_a_provider() -> None:
    method = SocialClientMethod()
    assert await method.enrollment_params(ClientContext(Silent(), {"provider": "google"})) == {"provider": "google"}
    with pytest.raises(ValidationError):
        await method.enrollment_params(ClientContext(Silent(), {}))


def test_no_one_can_stand_in_for_the_person() -> None:
    assert SocialClientMethod().unattended() is None


def test_the_system_browser_is_used_without_open_url(tmp_path: Path) -> None:
    """With no ``open_url`` the URL goes to the system browser (``$BROWSER`` here, a script that
    writes down what it was given) and the person is told the URL too."""
    record = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys, pathlib\npathlib.Path({str(record)!r}).write_text(sys.argv[1])\n")
    code = textwrap.dedent(
        f"""
        import asyncio
        from stepup_core.client.method import ClientContext
        from stepup_social.client import SocialClientMethod

        class Prompter:
            async def tell(self, message):
                print(message)

        challenge = {CHALLENGE!r}
        answer = asyncio.run(SocialClientMethod().answer(challenge, ClientContext(Prompter(), {{}})))
        assert answer.completed_elsewhere
        """
    )
    env = {**os.environ, "BROWSER": f"{sys.executable} {browser} %s", "DISPLAY": "", "WAYLAND_DISPLAY": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, timeout=60)
    url = CHALLENGE["data"]["authorizationUrl"]
    assert url in out.stdout
    for _ in range(100):  # the browser command may run in the background
        if record.exists():
            break
        time.sleep(0.05)
    assert record.read_text() == url
