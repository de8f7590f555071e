"""The token jar, the prompters and problem decoding, without a server."""

from __future__ import annotations

import io

import pytest

from stepup_core import errors
from stepup_core.client import (
    ScriptedPrompter,
    ScriptExhausted,
    StepUpClient,
    TerminalPrompter,
    TokenJar,
    error_from_problem,
    parse_www_authenticate,
)
from stepup_core.client.registry import client_methods
from stepup_core.clock import ManualClock
from stepup_core.models import IssuedToken
from stepup_core.plugins import get_plugin_manager
from stepup_core.testing.methods import KeyClientMethod, ThrowawayPlugin


def _token(name: str, scopes: tuple[str, ...], *, expires_at: float, single_use: bool = False) -> IssuedToken:
    return IssuedToken(
        elevated_access_token=f"sut_{name}", scopes=scopes, expires_at=expires_at, single_use=single_use, method="pin"
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(current=1_000.0)


def test_a_single_use_token_leaves_the_jar_when_taken(clock: ManualClock) -> None:
    jar = TokenJar(clock)
    jar.put(_token("once", ("wallet:export",), expires_at=1_300.0, single_use=True))
    assert jar.peek("wallet:export") is not None  # looking does not spend it
    taken = jar.take("wallet:export")
    assert taken is not None and taken.elevated_access_token == "sut_once"
    assert jar.take("wallet:export") is None
    assert len(jar) == 0


def test_a_time_bound_token_stays_until_it_expires(clock: ManualClock) -> None:
    jar = TokenJar(clock)
    jar.put(_token("reusable", ("user:update",), expires_at=1_600.0))
    assert jar.take("user:update") is not None
    assert jar.take("user:update") is not None
    clock.advance(599.999)
    assert jar.has_valid("user:update")
    clock.advance(0.001)  # expires_at reached: no longer valid
    assert not jar.has_valid("user:update")
    assert jar.take("user:update") is None
    assert jar.tokens() == []


def test_one_token_per_scope_set(clock: ManualClock) -> None:
    jar = TokenJar(clock)
    jar.put(_token("a", ("user:update", "user:delete"), expires_at=1_100.0))
    jar.put(_token("b", ("user:delete", "user:update"), expires_at=1_200.0))  # same set, other order
    assert [t.elevated_access_token for t in jar.tokens()] == ["sut_b"]
    jar.put(_token("c", ("user:update",), expires_at=1_050.0))
    assert sorted(t.elevated_access_token for t in jar.tokens()) == ["sut_b", "sut_c"]


def test_a_reusable_token_is_attached_before_a_single_use_one(clock: ManualClock) -> None:
    jar = TokenJar(clock)
    jar.put(_token("once", ("wallet:export",), expires_at=1_300.0, single_use=True))
    jar.put(_token("both", ("wallet:export", "user:update"), expires_at=1_100.0))
    assert jar.take("wallet:export").elevated_access_token == "sut_both"  # type: ignore[union-attr]
    assert jar.peek("wallet:export") is not None
    jar.discard("sut_both")
    assert jar.take("wallet:export").elevated_access_token == "sut_once"  # type: ignore[union-attr]
    assert jar.peek("wallet:export") is None


def test_is_step_up_required_reads_the_jar_with_the_injected_clock(clock: ManualClock) -> None:
    client = StepUpClient("http://127.0.0.1:9", "session", clock=clock, pm=get_plugin_manager(load_entrypoints=False))
    assert client.is_step_up_required("user:update")
    client.jar.put(_token("t", ("user:update",), expires_at=1_010.0))
    assert not client.is_step_up_required("user:update")
    assert client.is_step_up_required("user:delete")
    clock.advance(10)
    assert client.is_step_up_required("user:update")


# --- prompters -------------------------------------------------------------------------------


async def test_scripted_prompter_answers_by_index_or_text_and_records() -> None:
    prompter = ScriptedPrompter(choices=[1, "passkey"], codes=["123456"])
    assert await prompter.choose("Pick", ["a", "b"]) == 1
    assert await prompter.choose("Pick", ["Authenticator app [totp]", "Passkey [passkey]"]) == 1
    assert await prompter.ask_code("Code") == "123456"
    await prompter.tell("hello")
    assert prompter.told == ["hello"]
    with pytest.raises(ScriptExhausted, match="no code left for 'Code'"):
        await prompter.ask_code("Code")
    with pytest.raises(ScriptExhausted, match="no choice left"):
        await prompter.choose("Pick", ["a"])
    bad = ScriptedPrompter(choices=["wallet"])
    with pytest.raises(ScriptExhausted, match="matches none"):
        await bad.choose("Pick", ["Passkey [passkey]"])


async def test_terminal_prompter_numbers_choices_and_reads_codes_hidden() -> None:
    out = io.StringIO()
    lines = iter(["x", "9", "2"])
    secrets_typed = iter(["", " 654321 "])
    prompts: list[str] = []

    def read_line(prompt: str) -> str:
        prompts.append(prompt)
        return next(lines)

    def read_secret(prompt: str) -> str:
        prompts.append("secret:" + prompt)
        return next(secrets_typed)

    prompter = TerminalPrompter(output=out, read_line=read_line, read_secret=read_secret)
    assert await prompter.choose("How?", ["Passkey", "Authenticator app"]) == 1
    assert await prompter.ask_code("Code from your authenticator app") == "654321"
    text = out.getvalue()
    assert "How?\n  1. Passkey\n  2. Authenticator app\n" in text
    assert text.count("Please type a number from 1 to 2.") == 2
    assert "Nothing was typed" in text
    assert prompts[-1] == "secret:Code from your authenticator app: "


NO_TERMINAL_PROBE = """
import asyncio, json, sys
from stepup_core.client import TerminalPrompter
from stepup_core.errors import PromptUnavailable

async def main():
    out = {}
    asks = (("choose", lambda p: p.choose("How?", ["Passkey", "PIN"])), ("code", lambda p: p.ask_code("PIN")))
    for name, ask in asks:
        try:
            await ask(TerminalPrompter())
        except PromptUnavailable as exc:
            out[name] = [exc.code, str(exc)]
        except BaseException as exc:
            out[name] = [type(exc).__name__, str(exc)]
    print(json.dumps(out))

asyncio.run(main())
"""


def test_terminal_prompter_without_a_terminal_says_what_to_use_instead() -> None:
    """Standard input closed (a service, CI, cron): not a raw EOFError, but an error naming the
    unattended alternatives."""
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", NO_TERMINAL_PROBE],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # input() wrote its prompt to standard output before it met the end of input.
    answers = json.loads(result.stdout[result.stdout.index("{") :])
    for name in ("choose", "code"):
        code, message = answers[name]
        assert code == "prompt_unavailable", answers
        assert "ScriptedPrompter" in message and "credential_id" in message
        assert "standard input is closed or not a terminal" in message
    assert "a choice (How?)" in answers["choose"][1]
    assert "a code (PIN)" in answers["code"][1]


def test_dir_of_the_client_package_lists_every_exported_name() -> None:
    """In a fresh interpreter, before any name was used (the package imports them lazily)."""
    import json
    import subprocess
    import sys

    probe = (
        "import json, sys, stepup_core.client as c; "
        "print(json.dumps({'dir': dir(c), 'all': c.__all__, 'loaded': 'stepup_core.client.client' in sys.modules}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(result.stdout)
    assert set(report["all"]) <= set(report["dir"])
    assert report["dir"] == sorted(report["dir"])
    assert not report["loaded"], "dir() must not import the client module"


# --- problems and challenges ------------------------------------------------------------------


def test_problems_become_their_error_classes() -> None:
    limited = error_from_problem(429, {"code": "rate_limited", "detail": "slow down", "retryAfter": 7})
    assert isinstance(limited, errors.RateLimited) and limited.retry_after == 7 and str(limited) == "slow down"
    invalid = error_from_problem(
        422, {"code": "validation_error", "detail": "bad", "errors": [{"path": "scope", "message": "x"}]}
    )
    assert isinstance(invalid, errors.ValidationError) and invalid.errors[0]["path"] == "scope"
    required = error_from_problem(
        401, {"code": "insufficient_user_authentication", "detail": "d", "scope": "wallet:export", "check": {}}
    )
    assert isinstance(required, errors.StepUpRequired) and required.scope == "wallet:export"
    unknown = error_from_problem(418, {"code": "teapot", "detail": "short and stout"})
    assert type(unknown) is errors.StepUpError and unknown.details["code"] == "teapot"
    html = error_from_problem(502, "<html>bad gateway</html>")
    assert isinstance(html, errors.ServerError) and "502" in str(html)


def test_www_authenticate_parsing() -> None:
    header = 'Bearer error="insufficient_user_authentication", error_description="Step up", scope="user:update"'
    assert parse_www_authenticate(header) == {
        "error": "insufficient_user_authentication",
        "error_description": "Step up",
        "scope": "user:update",
    }
    assert parse_www_authenticate('Basic realm="x"') == {}


def test_a_client_method_registered_twice_is_an_error_naming_both() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(ThrowawayPlugin(client_methods=[KeyClientMethod("wallet")]), name="first")
    pm.register(ThrowawayPlugin(client_methods=[KeyClientMethod("wallet")]), name="second")
    with pytest.raises(errors.PluginError, match=r"'first' and 'second'|'second' and 'first'"):
        client_methods(pm)
