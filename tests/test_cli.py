"""The ``stepup`` command, run as a separate process: ``plugins`` and ``serve``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey

from stepup_core.server import serve_app

HEAVY_LIBRARIES = ("eth_account", "webauthn", "fido2", "redis", "aiosmtplib", "pyotp", "segno")
ISSUER = "https://id.example.test"
AUDIENCE = "stepup-cli-tests"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def _stepup(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepup_core.cli", *args],
        capture_output=True,
        text=True,
        env=env or _env(),
        cwd=cwd,
        timeout=120,
    )


# --- stepup plugins ---------------------------------------------------------------------------


def test_plugins_prints_json_rows_and_all_adds_the_builtins() -> None:
    plain = _stepup("plugins")
    assert plain.returncode == 0, plain.stderr
    rows = json.loads(plain.stdout)
    assert isinstance(rows, list)
    for row in rows:
        assert set(row) == {"name", "package", "version", "hooks"}
        assert row["hooks"] and all(h.startswith("stepup_") for h in row["hooks"])
        assert not row["name"].startswith("stepup_core.")
    everything = json.loads(_stepup("plugins", "--all").stdout)
    builtins = {r["name"] for r in everything} - {r["name"] for r in rows}
    assert "stepup_core.default_plugins.policy" in builtins
    policy = next(r for r in everything if r["name"] == "stepup_core.default_plugins.policy")
    assert policy["hooks"] == ["stepup_check"]


def test_plugins_honours_the_allow_list() -> None:
    none = _stepup("plugins", env=_env(STEPUP_LOAD_PLUGINS=""))
    assert none.returncode == 0 and json.loads(none.stdout) == []


def test_plugins_imports_no_method_library() -> None:
    probe = (
        "import sys\n"
        "from stepup_core.cli import main\n"
        "try:\n"
        "    main(['plugins'], standalone_mode=False)\n"
        "finally:\n"
        f"    print('HEAVY=' + ','.join(m for m in {HEAVY_LIBRARIES!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY=\n" in result.stdout, result.stdout


# --- stepup serve -----------------------------------------------------------------------------


class Served:
    def __init__(self, process: asyncio.subprocess.Process, lines: list[str], base_url: str) -> None:
        self.process = process
        self.lines = lines
        self.base_url = base_url

    async def check(self, authorization: str | None) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": authorization} if authorization else {}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.base_url}/stepup/check", json={"scope": "user:update"}, headers=headers) as resp,
        ):
            return resp.status, await resp.json(content_type=None)


@asynccontextmanager
async def serve(*args: str, cwd: Path, env: dict[str, str] | None = None) -> AsyncIterator[Served]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stepup_core.cli",
        "serve",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        env=env or _env(),
    )
    assert process.stdout is not None
    lines: list[str] = []
    base_url = None
    try:
        while base_url is None:
            raw = await asyncio.wait_for(process.stdout.readline(), 60)
            if not raw:
                raise AssertionError("stepup serve exited early:\n" + "".join(lines))
            line = raw.decode()
            lines.append(line)
            match = re.search(r"stepup listening on (http://\S+?)/stepup ", line)
            if match:
                base_url = match.group(1)
        yield Served(process, lines, base_url)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            rest, _ = await asyncio.wait_for(process.communicate(), 30)
            lines.append(rest.decode())


async def test_serve_without_config_runs_a_labelled_development_server(tmp_path: Path) -> None:
    async with serve(cwd=tmp_path) as served:
        text = "".join(served.lines)
        assert "DEVELOPMENT MODE" in text and "Do not expose this server" in text
        token = re.search(r"Development token: (\S+)", text).group(1)  # type: ignore[union-attr]
        assert f"curl -s -X POST {served.base_url}/stepup/check -H 'Authorization: Bearer {token}'" in text
        status, body = await served.check(f"Bearer {token}")
        assert status == 200 and body["isRequired"] is True and body["scope"] == "user:update"
        status, body = await served.check("Bearer dev_guessed")
        assert status == 401 and body["code"] == "unauthenticated"
    assert served.process.returncode == 0
    assert "stepup stopped" in "".join(served.lines)
    assert (tmp_path / "stepup.sqlite3").exists()  # the SQLite default, in the working directory


def _write_config(tmp_path: Path, identify: str, *, allow_console_delivery: bool = True) -> Path:
    """A stepup.toml. These tests are about identifying callers: the console sender is allowed
    explicitly so that an installed code-sending method (otp) does not stop the start."""
    config = tmp_path / "stepup.toml"
    allow = "allow_console_delivery = true\n" if allow_console_delivery else ""
    config.write_text(
        f'store = "sqlite:{tmp_path / "serve.sqlite3"}"\nsecret_key = "{secrets.token_hex(32)}"\n{allow}\n{identify}',
        encoding="utf-8",
    )
    return config


def _claims(**overrides: Any) -> dict[str, Any]:
    import time

    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "sid": "sess-1", "iat": now, "exp": now + 300}
    claims.update(overrides)
    return claims


async def test_serve_identifies_signed_session_jwts_with_an_hmac_key(tmp_path: Path) -> None:
    secret = secrets.token_urlsafe(40)
    config = _write_config(
        tmp_path, f'[identify]\nmode = "jwt"\nkey = "{secret}"\nissuer = "{ISSUER}"\naudience = "{AUDIENCE}"\n'
    )
    key = OctKey.import_key(secret.encode())
    async with serve("--config", str(config), cwd=tmp_path) as served:
        assert "identifying callers by jwt" in "".join(served.lines)
        status, body = await served.check("Bearer " + jwt.encode({"alg": "HS256"}, _claims(), key))
        assert status == 200 and body["isRequired"] is True
        expired = jwt.encode({"alg": "HS256"}, _claims(exp=int(_claims()["iat"]) - 120), key)
        status, body = await served.check(f"Bearer {expired}")
        assert status == 401 and "expired" in body["detail"]
        wrong_audience = jwt.encode({"alg": "HS256"}, _claims(aud="another-app"), key)
        assert (await served.check(f"Bearer {wrong_audience}"))[0] == 401


async def test_serve_identifies_jwts_against_a_jwks_on_loopback(tmp_path: Path) -> None:
    signing = ECKey.generate_key("P-256", parameters={"kid": "main"}, private=True)
    hits: list[int] = []

    async def jwks(request: web.Request) -> web.Response:
        hits.append(1)
        return web.json_response(KeySet([signing]).as_dict())

    app = web.Application()
    app.router.add_get("/jwks.json", jwks)
    async with serve_app(app) as idp:
        config = _write_config(
            tmp_path,
            f'[identify]\nmode = "jwt"\njwks_url = "{idp}/jwks.json"\nissuer = "{ISSUER}"\naudience = "{AUDIENCE}"\n',
        )
        async with serve("--config", str(config), cwd=tmp_path) as served:
            token = jwt.encode({"alg": "ES256", "kid": "main"}, _claims(), signing)
            for _ in range(2):
                status, body = await served.check(f"Bearer {token}")
                assert status == 200, body
            assert len(hits) == 1  # fetched once, then cached
            other = ECKey.generate_key("P-256", parameters={"kid": "main"}, private=True)
            forged = jwt.encode({"alg": "ES256", "kid": "main"}, _claims(sub="admin"), other)
            assert (await served.check(f"Bearer {forged}"))[0] == 401


async def test_serve_identifies_static_development_tokens(tmp_path: Path) -> None:
    token = "static-" + secrets.token_hex(12)
    config = _write_config(
        tmp_path,
        f'[identify]\nmode = "tokens"\n\n[identify.tokens."{token}"]\nuser_id = "ann"\nsession_id = "ann-1"\n',
    )
    async with serve("--config", str(config), cwd=tmp_path) as served:
        assert (await served.check(f"Bearer {token}"))[0] == 200
        status, body = await served.check("Bearer static-wrong-token-000000")
        assert status == 401 and body["code"] == "unauthenticated"


async def test_serve_logs_one_line_per_request_and_never_a_secret(tmp_path: Path) -> None:
    token = "static-" + secrets.token_hex(12)
    elevated = "sut_" + secrets.token_urlsafe(32)
    config = _write_config(tmp_path, f'[identify]\nmode = "tokens"\n\n[identify.tokens."{token}"]\nuser_id = "ann"\n')
    async with serve("--config", str(config), "--log-level", "info", cwd=tmp_path) as served:
        assert (await served.check(f"Bearer {token}"))[0] == 200
        async with aiohttp.ClientSession() as http:
            url = f"{served.base_url}/stepup/callback/social?code=CODE-{elevated}&state=STATE-{elevated}"
            headers = {"Authorization": f"Bearer {token}", "X-Elevated-Access-Token": elevated}
            async with http.get(url, headers=headers) as resp:
                callback_status = resp.status
            async with http.get(f"{served.base_url}/stepup/%0Afake%20line") as resp:
                assert resp.status == 404
    text = "".join(served.lines)
    access = [line for line in text.splitlines() if " stepup.access: " in line]
    assert len(access) == 3, text
    assert re.search(r" INFO stepup\.access: POST /stepup/check 200 \d+\.\d ms$", access[0]), access
    assert re.search(rf" INFO stepup\.access: GET /stepup/callback/social {callback_status} \d+\.\d ms$", access[1])
    assert access[2].endswith(" ms") and "GET /stepup/%0Afake%20line 404 " in access[2]
    assert token not in text and elevated not in text, "a header value or a query secret reached the log"
    assert "CODE-" not in text and "STATE-" not in text


async def test_serve_by_default_leaves_out_the_access_log(tmp_path: Path) -> None:
    """The default level is warning: refusals and faults, no line per request."""
    token = "static-" + secrets.token_hex(12)
    config = _write_config(tmp_path, f'[identify]\nmode = "tokens"\n\n[identify.tokens."{token}"]\nuser_id = "ann"\n')
    async with serve("--config", str(config), cwd=tmp_path) as served:
        assert (await served.check(f"Bearer {token}"))[0] == 200
    assert "stepup.access" not in "".join(served.lines)
    assert "stepup stopped" in "".join(served.lines)


def test_serve_with_a_bad_configuration_says_what_is_wrong(tmp_path: Path) -> None:
    config = _write_config(tmp_path, '[identify]\nmode = "jwt"\nkey = "short"\n')
    result = _stepup("serve", "--config", str(config), "--port", "0", cwd=tmp_path)
    assert result.returncode == 1
    assert "Error: identify.key: an HMAC secret must be at least 32 bytes" in result.stderr
    assert "Traceback" not in result.stderr
    missing = _stepup("serve", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert missing.returncode == 2 or "does not exist" in missing.stderr


async def test_serve_logs_every_logger_with_secrets_redacted(tmp_path: Path) -> None:
    secret = "sess" + secrets.token_urlsafe(24)
    async with serve("--log-level", "debug", cwd=tmp_path) as served:
        port = int(served.base_url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stepup/credentials HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + secret.encode()
                     + b"\x00\r\nConnection: close\r\n\r\n")
        await writer.drain()
        assert (await reader.read()).startswith(b"HTTP/1.0 400")
        writer.close()
    output = "".join(served.lines)
    assert "ERROR aiohttp.server: Error handling request" in output
    assert "DEBUG asyncio: Using selector" in output  # every logger, from DEBUG up
    assert secret[:12] not in output and secret[-12:] not in output


async def test_development_mode_accepts_passkeys_from_pages_on_its_own_port(tmp_path: Path) -> None:
    """The page a developer opens is http://localhost:PORT: a passkey created there registers,
    and one created on any other origin is refused with both origins named."""
    pytest.importorskip("stepup_passkey", reason="needs stepup-passkey (installed with all plugins)")
    from stepup_passkey.testing import SoftwareAuthenticator

    from stepup_core.client import StepUpClient
    from stepup_core.errors import VerificationFailed

    async with serve(cwd=tmp_path) as served:
        text = "".join(served.lines)
        token = re.search(r"Development token: (\S+)", text).group(1)  # type: ignore[union-attr]
        page = "http://localhost:" + served.base_url.rsplit(":", 1)[1]
        assert f"Passkeys: pages on {page}" in text
        async with StepUpClient(served.base_url, token) as client:
            with pytest.raises(VerificationFailed) as refused:
                await client.enroll("passkey", authenticator=SoftwareAuthenticator(origin="https://localhost"))
            assert "'https://localhost'" in refused.value.message and f"'{page}'" in refused.value.message
            view = await client.enroll("passkey", authenticator=SoftwareAuthenticator(origin=page))
            assert view.method == "passkey"


STATIC_TOKENS = '[identify]\nmode = "tokens"\n\n[identify.tokens."static-0123456789abcdef"]\nuser_id = "ann"\n'


def test_serve_refuses_to_print_codes_to_the_console_outside_development_mode(tmp_path: Path) -> None:
    pytest.importorskip("stepup_otp", reason="needs a method that sends codes (stepup-otp, with all plugins)")
    config = _write_config(tmp_path, STATIC_TOKENS, allow_console_delivery=False)
    result = _stepup("serve", "--config", str(config), "--port", "0", cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    assert "Error: method 'otp' sends codes by email, but no email sender is configured" in result.stderr
    assert "allow_console_delivery = true" in result.stderr
    assert "Traceback" not in result.stderr and "listening" not in result.stdout


async def test_serve_starts_with_real_senders_or_the_console_allowed_explicitly(tmp_path: Path) -> None:
    pytest.importorskip("stepup_otp", reason="needs a method that sends codes (stepup-otp, with all plugins)")
    email_only = (
        '[plugins.otp]\nchannels = ["email"]\n\n[plugins.otp.smtp]\nhost = "127.0.0.1"\nport = 2525\n'
        'security = "none"\nsender = "no-reply@example.test"\n\n'
    )
    for number, (body, allow) in enumerate(((email_only + STATIC_TOKENS, False), (STATIC_TOKENS, True))):
        # Each start gets its own store: a store remembers the secret keys its data needs.
        directory = tmp_path / f"start-{number}"
        directory.mkdir()
        config = _write_config(directory, body, allow_console_delivery=allow)
        async with serve("--config", str(config), cwd=directory) as served:
            assert (await served.check("Bearer static-0123456789abcdef"))[0] == 200


# --- docs/cli.md stays in step with the command ------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_help_texts_in_the_docs_match_the_command() -> None:
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"```text\n\$ stepup ((?:\w+ )?)--help\n(.*?)\n```", text, re.S)
    from stepup_core.cli import main

    assert {args.strip() for args, _ in blocks} == {"", *main.commands}  # every command is documented
    for args, documented in blocks:
        actual = _stepup(*args.split(), "--help", env=_env(COLUMNS="80"))
        assert actual.stdout.rstrip() == documented, f"docs/cli.md: `stepup {args}--help` drifted"


def test_generated_samples_in_the_docs_match_the_code() -> None:
    from stepup_core.cli import _dev_banner
    from stepup_core.demo import _core_only_message

    text = DOCS.read_text(encoding="utf-8")
    token = re.search(r"Development token: (\S+)", text).group(1)  # type: ignore[union-attr]
    assert _dev_banner("http://127.0.0.1:8080", "/stepup", token, "sqlite:stepup.sqlite3") in text
    assert _core_only_message() in text
    header = next(line for line in text.splitlines() if line.startswith("METHOD "))
    assert header.split() == ["METHOD", "USER", "PROTECTED", "ROUTE", "TOKEN", "RESULT", "MS"]


def test_credential_prints_a_credential_and_only_its_hash_for_the_configuration(tmp_path: Path) -> None:
    from stepup_core.config import load_config
    from stepup_core.introspection import client_of

    done = _stepup("credential", "--name", "billing")
    assert done.returncode == 0, done.stderr
    credential = re.search(r"^  (sis_\S+)$", done.stdout, re.M).group(1)  # type: ignore[union-attr]
    table = done.stdout.split("Add to stepup.toml:", 1)[1]
    assert credential not in table
    config = tmp_path / "stepup.toml"
    config.write_text(table.replace("\n  ", "\n"))
    clients = load_config(config).introspection.clients
    assert client_of(f"Bearer {credential}", clients) == "billing"


def test_jwks_list_rotate_and_remove(tmp_path: Path) -> None:
    config = tmp_path / "stepup.toml"
    config.write_text(
        f'store = "sqlite:{tmp_path / "stepup.sqlite3"}"\nsecret_key = "{secrets.token_hex(32)}"\n'
        '[scopes."user:update"]\nsigned = true\n'
    )
    rotated = _stepup("jwks", "rotate", "--config", str(config))
    assert rotated.returncode == 0, rotated.stderr
    first = re.search(r"signing with key (\S+);", rotated.stdout).group(1)  # type: ignore[union-attr]
    second = re.search(  # type: ignore[union-attr]
        r"signing with key (\S+);", _stepup("jwks", "rotate", "--config", str(config)).stdout
    ).group(1)
    listed = json.loads(_stepup("jwks", "list", "--config", str(config)).stdout)
    assert [(k["kid"], k["published"], k["retiredAt"] is None) for k in listed] == [
        (first, True, False), (second, True, True),
    ]
    removed = _stepup("jwks", "remove", "--config", str(config), first)
    assert removed.returncode == 0 and "removed key" in removed.stdout
    assert [k["kid"] for k in json.loads(_stepup("jwks", "list", "--config", str(config)).stdout)] == [second]
    missing = _stepup("jwks", "remove", "--config", str(config), "no-such-key")
    assert missing.returncode == 1 and "no signing key" in missing.stderr
