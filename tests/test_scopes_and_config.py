"""TokenScope, ScopePolicy defaults and configuration errors that name the key."""

from __future__ import annotations

import pytest

from stepup_core.config import config_from_mapping, load_config
from stepup_core.errors import ConfigError, InvalidScope, MethodNotAllowed
from stepup_core.models import Factor, TokenBehavior
from stepup_core.scopes import ScopePolicies, TokenScope


def test_reference_defaults():
    policies = ScopePolicies()
    for scope in ("wallet:export", "wallet:sign", "wallet:delete"):
        assert policies.policy_for(scope).token_behavior is TokenBehavior.SINGLE_USE
        assert policies.policy_for(scope).ttl == 300
    for scope in TokenScope.BUILT_IN - {"wallet:export", "wallet:sign", "wallet:delete"}:
        assert policies.policy_for(scope).token_behavior is TokenBehavior.TIME_BOUND
        assert policies.policy_for(scope).ttl == 600


@pytest.mark.parametrize("scope", ["wallet", "Wallet:Export", "a:b:c:d", "wallet:", ":x", "a b:c", "x" * 70 + ":y", 5])
def test_malformed_scopes_are_refused(scope):
    with pytest.raises(InvalidScope):
        ScopePolicies().validate(scope)


def test_application_scopes_must_be_declared():
    config = config_from_mapping({"declared_scopes": ["billing:payout"],
                                  "scopes": {"org:member:remove": {"token_behavior": "single_use", "ttl": 60}}})
    policies = config.scope_policies()
    assert policies.validate("billing:payout") == "billing:payout"
    assert policies.policy_for("org:member:remove").ttl == 60
    with pytest.raises(InvalidScope, match="unknown scope"):
        policies.validate("billing:refund")


def test_token_shape_for_several_scopes_is_the_strictest():
    behavior, ttl = ScopePolicies().token_shape(["user:update", "wallet:export"])
    assert behavior is TokenBehavior.SINGLE_USE and ttl == 300


def test_policy_confines_methods_and_factor():
    config = config_from_mapping({"scopes": {"user:delete": {"allowed_methods": ["passkey"]},
                                             "wallet:*": {"min_factor": "mfa"}}})
    policies = config.scope_policies()
    policies.ensure_method_allowed(["user:delete"], "passkey", Factor.MFA)
    with pytest.raises(MethodNotAllowed):
        policies.ensure_method_allowed(["user:delete"], "totp", Factor.MFA)
    with pytest.raises(MethodNotAllowed):
        policies.ensure_method_allowed(["wallet:sign"], "otp", Factor.REAUTH)
    # overriding wallet:* keeps its single-use default
    assert policies.policy_for("wallet:sign").token_behavior is TokenBehavior.SINGLE_USE


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"limits": {"max_attempts": "five"}}, "limits.max_attempts"),
        ({"limts": {}}, "limts: unknown field"),
        ({"scopes": {"user:update": {"ttl": -1}}}, "ttl"),
        ({"scopes": {"BAD KEY": {}}}, "BAD KEY"),
        ({"scopes": {"user:update": {"token_behavior": "forever"}}}, "token_behavior"),
        ({"secret_key": "short"}, "secret_key"),
        ({"identify": {"mode": "jwt"}}, "identify.jwks_url"),
    ],
)
def test_wrong_keys_and_values_name_the_key(data, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.").replace("[", r"\[")):
        config_from_mapping(data)


def test_secrets_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MY_KEY", "ab" * 32)
    file = tmp_path / "stepup.toml"
    file.write_text('secret_key = "${MY_KEY}"\nstore = "memory:"\n[plugins.otp]\npassword = "${SMTP_PW}"\n')
    with pytest.raises(ConfigError, match="SMTP_PW"):
        load_config(file)
    monkeypatch.setenv("SMTP_PW", "pw")
    config = load_config(file)
    assert config.secret_key_bytes() == bytes.fromhex("ab" * 32)
    assert config.plugins["otp"]["password"] == "pw"
    monkeypatch.delenv("MY_KEY")
    monkeypatch.setenv("STEPUP_SECRET_KEY", "cd" * 32)
    assert config_from_mapping({}).secret_key_bytes() == bytes.fromhex("cd" * 32)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("store = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
