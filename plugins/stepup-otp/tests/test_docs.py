"""The documentation stays in step with the code: its configuration examples load, and every
setting is documented."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import attrs
import pytest
from stepup_otp.settings import HeaderSetting, OtpSettings, SmsGatewaySettings, SmtpSettings, load_settings

from stepup_core.config import config_from_mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
DOC_PAGE = PLUGIN_ROOT.parents[1] / "docs" / "plugins" / "otp.md"
README = PLUGIN_ROOT / "README.md"


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.parametrize("document", [DOC_PAGE, README], ids=["docs-page", "readme"])
def test_configuration_examples_load(document: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "example-password")
    monkeypatch.setenv("SMS_API_TOKEN", "example-token")
    [example] = blocks(document.read_text(encoding="utf-8"), "toml")
    settings = load_settings(config_from_mapping(tomllib.loads(example)))
    assert settings.smtp is not None and settings.smtp.password == "example-password"
    assert settings.sms_gateway is not None and settings.sms_gateway.auth_header is not None
    assert settings.sms_gateway.auth_header.value == "Bearer example-token"


def test_json_examples_are_json() -> None:
    examples = blocks(DOC_PAGE.read_text(encoding="utf-8"), "json")
    assert len(examples) >= 3
    for example in examples:
        json.loads(example.replace("enr_3f0Qm1...", "enr_3f0Qm1"))


@pytest.mark.parametrize("cls", [OtpSettings, SmtpSettings, SmsGatewaySettings, HeaderSetting])
def test_every_setting_is_documented(cls: type) -> None:
    page = DOC_PAGE.read_text(encoding="utf-8")
    for field in attrs.fields(cls):
        if attrs.has(field.type) or field.name in ("smtp", "sms_gateway"):
            continue
        assert f"`{field.name}`" in page or f"{field.name} = " in page, f"{cls.__name__}.{field.name} is not documented"
