"""The operators' commands, run as separate processes: ``migrate``, ``keys`` and ``admin``.

The store is a SQLite file the test fills through a service of its own (credentials of any
method are stored records; no method plugin is needed to show, delete or reset them). With no
method plugin loaded, ``keys rotate`` re-keys nothing and reports the older key each sealed
value names (the rotation with the real methods is ``stepup_core.testing.rotation``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

from stepup_core.config import load_config
from stepup_core.crypto import key_id
from stepup_core.models import Credential, CredentialFormat, Factor, Principal
from stepup_core.plugins import get_plugin_manager
from stepup_core.service import StepUpService

ALICE = Principal("alice", "alice-laptop")


def _stepup(*args: str, config: Path | None = None, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "STEPUP_LOAD_PLUGINS": "", **env}
    if config is not None:
        environment["STEPUP_CONFIG"] = str(config)
    return subprocess.run(
        [sys.executable, "-m", "stepup_core.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        input=stdin,
        timeout=120,
    )


def _columns(header: str) -> list[tuple[str, int, int | None]]:
    """A table header's columns: name, first offset, offset of the next column (None: the last)."""
    found = [(m.group(), m.start()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    return [(name, start, found[i + 1][1] if i + 1 < len(found) else None) for i, (name, start) in enumerate(found)]


def _table(out: str, heading: str) -> list[dict[str, str]]:
    """The rows of the table under ``heading (N):`` in ``show-user`` text, each cell read at its
    header's offset (as a reader's eye follows a column down)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{heading} ("))
    header, rule = lines[start + 1], lines[start + 2]
    assert set(rule.strip()) == {"-", " "}
    rows = []
    for line in lines[start + 3:]:
        if not line.startswith("  "):
            break
        rows.append({name: line[begin:end].strip() for name, begin, end in _columns(header)})
    return rows


def _audit(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line.removeprefix("audit: ")) for line in stderr.splitlines() if line.startswith("audit: ")]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "stepup.toml"
    path.write_text(
        f'store = "sqlite:{tmp_path / "stepup.sqlite3"}"\n'
        f'secret_key = "{secrets.token_hex(32)}"\n'
        "[limits]\nlockout_failures = 5\n"
    )
    return path


def _credential(cid: str, method: str, fmt: CredentialFormat, factor: Factor, **data: Any) -> Credential:
    return Credential(
        id=cid,
        user_id="alice",
        method=method,
        format=fmt,
        factor=factor,
        created_at=1_800_000_000.0,
        alias=method.upper(),
        data=dict(data),
    )


async def _seed(config: Path) -> None:
    service = await StepUpService.create(load_config(config), pm=get_plugin_manager(load_entrypoints=False))
    try:
        sealed = service.keys.seal("totp-secret", b"JBSWY3DPEHPK3PXP")
        await service.credentials.save(
            _credential("cred_totp", "totp", CredentialFormat.TOTP, Factor.MFA, secret=sealed)
        )
        await service.credentials.save(
            _credential("cred_pk", "passkey", CredentialFormat.PASSKEY, Factor.MFA, publicKey="pQECAyYg")
        )
        await service.credentials.save(
            _credential(
                "cred_codes", "recovery", CredentialFormat.RECOVERY_CODE, Factor.MFA,
                set="s1", keyId=service.keys.current_id, public={"remaining": 7, "total": 10},
            )
        )
        await service.credentials.save(
            _credential("cred_mail", "otp", CredentialFormat.EMAIL, Factor.REAUTH, public={})
        )
        await service.tokens.mint(ALICE, ["user:update"], method="totp", ttl=600, single_use=False)
        await service.tokens.mint(Principal("alice", "alice-phone"), ["wallet:export"], method="passkey", ttl=300,
                                  single_use=True)
        await service.tokens.mint(Principal("bob", "bob-1"), ["user:update"], method="totp", ttl=600, single_use=False)
        for _ in range(6):
            await service.store.incr("failures:alice", ttl=900)
    finally:
        await service.close()


async def _state(config: Path) -> dict[str, Any]:
    service = await StepUpService.create(load_config(config), pm=get_plugin_manager(load_entrypoints=False))
    try:
        return {
            "credentials": sorted(c.id for c in await service.credentials.list_for_user("alice")),
            "grants": sorted(g.session_id for g in await service.tokens.list_user("alice")),
            "bob": len(await service.tokens.list_user("bob")),
            "failures": await service.limits.failures("alice"),
        }
    finally:
        await service.close()


# --- admin ------------------------------------------------------------------------------------


def test_show_user_lists_credentials_grants_and_lockout_without_secrets(config: Path) -> None:
    asyncio.run(_seed(config))
    shown = _stepup("admin", "show-user", "alice", "--operator", "dana", config=config)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert out.splitlines()[0] == "user alice"
    assert "credentials (4):" in out
    for cid in ("cred_totp", "cred_pk", "cred_codes", "cred_mail"):
        assert cid in out
    assert '"remaining": 7' in out
    assert "live grants (2):" in out
    grants = {row["SESSION"]: row for row in _table(out, "live grants")}
    assert (grants["alice-laptop"]["SCOPES"], grants["alice-laptop"]["KIND"], grants["alice-laptop"]["METHOD"]) == (
        "user:update", "time-bound", "totp"
    )
    assert (grants["alice-phone"]["SCOPES"], grants["alice-phone"]["KIND"], grants["alice-phone"]["METHOD"]) == (
        "wallet:export", "single-use", "passkey"
    )
    assert "lockout: 6 failures in the current window (locks at 5, window 900 s): LOCKED OUT" in out
    assert "aesgcm" not in out and "pQECAyYg" not in out and "JBSWY3DP" not in out
    events = _audit(shown.stderr)
    assert [e["type"] for e in events] == ["admin_user_viewed"]
    assert events[0]["userId"] == "alice"
    assert events[0]["details"] == {"operator": "dana", "via": "cli"}

    as_json = _stepup("admin", "show-user", "alice", "--json", "--operator", "dana", config=config)
    report = json.loads(as_json.stdout)
    assert report["lockout"] == {"failures": 6, "limit": 5, "window": 900.0, "locked": True}
    assert {g["sessionId"] for g in report["grants"]} == {"alice-laptop", "alice-phone"}
    assert all("tokenHash" not in g for g in report["grants"])


def test_every_change_asks_for_confirmation_and_a_no_changes_nothing(config: Path) -> None:
    asyncio.run(_seed(config))
    before = asyncio.run(_state(config))
    for args in (
        ("unlock", "alice"),
        ("revoke-grants", "alice"),
        ("revoke-grants", "alice", "--session", "alice-phone"),
        ("delete-credential", "alice", "cred_pk"),
        ("reset-mfa", "alice"),
    ):
        refused = _stepup("admin", *args, "--operator", "dana", config=config, stdin="n\n")
        assert refused.returncode == 1, (args, refused.stdout, refused.stderr)
        assert "[y/N]" in refused.stdout
        assert "Aborted" in refused.stderr
        assert _audit(refused.stderr) == []
    assert asyncio.run(_state(config)) == before


def test_unlock_revoke_delete_and_reset_each_act_and_audit_the_operator(config: Path) -> None:
    asyncio.run(_seed(config))

    unlocked = _stepup("admin", "unlock", "alice", "--operator", "dana", config=config, stdin="y\n")
    assert unlocked.returncode == 0, unlocked.stderr
    assert "unlocked alice: 6 failures cleared" in unlocked.stdout
    assert asyncio.run(_state(config))["failures"] == 0

    one = _stepup("admin", "revoke-grants", "alice", "--session", "alice-phone", "--yes", "--operator", "dana",
                  config=config)
    assert "revoked 1 grant of session 'alice-phone' of user 'alice'" in one.stdout
    assert asyncio.run(_state(config))["grants"] == ["alice-laptop"]

    deleted = _stepup("admin", "delete-credential", "alice", "cred_pk", "--yes", "--operator", "dana", config=config)
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted passkey credential cred_pk of alice" in deleted.stdout
    missing = _stepup("admin", "delete-credential", "alice", "cred_nope", "--yes", config=config)
    assert missing.returncode == 1
    assert "credential_not_found" in missing.stderr

    reset = _stepup("admin", "reset-mfa", "alice", "--yes", "--operator", "dana", config=config)
    assert reset.returncode == 0, reset.stderr
    assert "removed 2 credentials (recovery cred_codes, totp cred_totp); revoked 1 grant" in reset.stdout
    state = asyncio.run(_state(config))
    assert state["credentials"] == ["cred_mail"]  # re-authentication stays: the way back in
    assert state["grants"] == []
    assert state["bob"] == 1  # another user's grants are untouched

    events = [e for r in (unlocked, one, deleted, reset) for e in _audit(r.stderr)]
    assert [e["type"] for e in events] == [
        "admin_user_unlocked", "admin_grants_revoked", "admin_credential_deleted", "admin_mfa_reset",
    ]
    assert all(e["details"]["operator"] == "dana" and e["userId"] == "alice" for e in events)
    assert events[3]["details"]["removed"] == ["cred_codes", "cred_totp"]


def test_the_operator_defaults_to_the_os_user(config: Path) -> None:
    import getpass

    asyncio.run(_seed(config))
    done = _stepup("admin", "unlock", "alice", "--yes", config=config)
    assert _audit(done.stderr)[0]["details"]["operator"] == getpass.getuser()


def test_admin_needs_a_configuration(tmp_path: Path) -> None:
    missing = _stepup("admin", "show-user", "alice")
    assert missing.returncode == 2
    assert "--config" in missing.stderr


# --- admin, in this process (click's runner) ---------------------------------------------------


def _admin(*args: str, config: Path, stdin: str | None = None) -> str:
    from stepup_core.cli import main

    result = CliRunner().invoke(
        main, ["admin", *args, "--operator", "dana"], input=stdin,
        env={"STEPUP_CONFIG": str(config), "STEPUP_LOAD_PLUGINS": ""},
    )
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


async def _seed_carol(config: Path) -> None:
    """carol: one authenticator app, grants in two sessions (one in the first, two in the second)
    and one failed verification."""
    service = await StepUpService.create(load_config(config), pm=get_plugin_manager(load_entrypoints=False))
    try:
        await service.credentials.save(
            attrs.evolve(_credential("cred_t", "totp", CredentialFormat.TOTP, Factor.MFA), user_id="carol")
        )
        await service.tokens.mint(Principal("carol", "c1"), ["user:update"], method="totp", ttl=600,
                                  single_use=False)
        for scope in ("user:update", "wallet:export"):
            await service.tokens.mint(Principal("carol", "c2"), [scope], method="totp", ttl=600, single_use=False)
        await service.store.incr("failures:carol", ttl=900)
    finally:
        await service.close()


def test_admin_counts_read_right_for_one_none_and_many(config: Path) -> None:
    asyncio.run(_seed_carol(config))

    shown = _admin("show-user", "carol", config=config)
    assert "lockout: 1 failure in the current window (locks at 5, window 900 s): not locked" in shown
    assert _admin("unlock", "carol", "--yes", config=config) == "unlocked carol: 1 failure cleared\n"
    assert _admin("unlock", "carol", "--yes", config=config) == "unlocked carol: 0 failures cleared\n"
    assert "lockout: 0 failures in the current window" in _admin("show-user", "carol", config=config)

    one = _admin("revoke-grants", "carol", "--session", "c1", "--yes", config=config)
    assert one == "revoked 1 grant of session 'c1' of user 'carol'\n"
    many = _admin("revoke-grants", "carol", "--yes", config=config)
    assert many == "revoked 2 grants of every session of user 'carol'\n"
    none = _admin("revoke-grants", "carol", "--yes", config=config)
    assert none == "revoked 0 grants of every session of user 'carol'\n"

    reset = _admin("reset-mfa", "carol", config=config, stdin="y\n")
    assert "Reset MFA of user 'carol': remove 1 credential (totp cred_t) and revoke every grant? [y/N]" in reset
    assert reset.endswith("reset MFA of carol: removed 1 credential (totp cred_t); revoked 0 grants\n")
    again = _admin("reset-mfa", "carol", "--yes", config=config)
    assert again == "reset MFA of carol: removed 0 credentials (none); revoked 0 grants\n"


async def _seed_uneven(config: Path) -> None:
    """Two credentials and two grants whose ids, methods and aliases differ in length."""
    service = await StepUpService.create(load_config(config), pm=get_plugin_manager(load_entrypoints=False))
    try:
        await service.credentials.save(
            attrs.evolve(
                _credential("cred_a", "recovery", CredentialFormat.RECOVERY_CODE, Factor.MFA,
                            public={"remaining": 3, "total": 10}),
                alias=None,
            )
        )
        await service.credentials.save(
            attrs.evolve(
                _credential("cred_with_a_much_longer_id_0123456789", "otp", CredentialFormat.EMAIL, Factor.REAUTH),
                alias="Work mail", is_default=True,
            )
        )
        await service.tokens.mint(ALICE, ["user:update"], method="otp", ttl=600, single_use=False)
        await service.tokens.mint(Principal("alice", "p"), ["wallet:export", "credential:link"], method="recovery",
                                  ttl=300, single_use=True)
    finally:
        await service.close()


def test_show_user_tables_line_up_when_ids_differ_in_length(config: Path) -> None:
    asyncio.run(_seed_uneven(config))
    out = _admin("show-user", "alice", config=config)
    lines = out.splitlines()

    for heading, header, expected in (
        ("credentials", "ID", [
            {"ID": "cred_a", "METHOD": "recovery", "FACTOR": "mfa", "ALIAS": "", "DEFAULT": "",
             "DETAILS": '{"remaining": 3, "total": 10}'},
            {"ID": "cred_with_a_much_longer_id_0123456789", "METHOD": "otp", "FACTOR": "reauth",
             "ALIAS": '"Work mail"', "DEFAULT": "yes", "DETAILS": ""},
        ]),
        ("live grants", "SESSION", [
            {"SESSION": "alice-laptop", "SCOPES": "user:update", "KIND": "time-bound", "METHOD": "otp"},
            {"SESSION": "p", "SCOPES": "credential:link wallet:export", "KIND": "single-use", "METHOD": "recovery"},
        ]),
    ):
        start = lines.index(f"{heading} (2):")
        table = lines[start + 1:start + 5]
        assert table[0].startswith(f"  {header}  ")
        columns = _columns(table[0])
        for line in table[1:]:
            for _, begin, end in columns:
                # Every value starts at its header's offset on every line: a gap before it, its
                # first character right at the offset (an empty cell holds nothing there).
                cell = line[begin:end]
                if cell.strip():
                    assert line[begin - 2:begin] == "  " and not cell[0].isspace(), (line, begin)
        rows = sorted(_table(out, heading), key=lambda row: row[header])
        assert [{name: row[name] for name in want} for row, want in zip(rows, expected, strict=True)] == expected
        for row in rows:
            for name in ("CREATED", "LAST USED", "EXPIRES"):
                if name in row:
                    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC|never", row[name]), row


# --- keys -------------------------------------------------------------------------------------


def test_keys_rotate_reports_and_removing_the_old_key_too_early_is_refused(config: Path, tmp_path: Path) -> None:
    asyncio.run(_seed(config))
    old = config.read_text().split('secret_key = "', 1)[1].split('"', 1)[0]
    new = _stepup("keys", "generate")
    assert new.returncode == 0
    new_key = new.stdout.strip()
    new_id, old_id = new.stderr.strip().removeprefix("key id: "), key_id(bytes.fromhex(old))
    key_file = tmp_path / "keys"
    key_file.write_text(f"# current first\n{new_key}\n{old}  # the old one\n")
    rotated_config = tmp_path / "rotated.toml"
    rotated_config.write_text(
        config.read_text().replace(f'secret_key = "{old}"', f'secret_keys_file = "{key_file}"')
    )

    listed = _stepup("keys", "list", config=rotated_config)
    assert listed.returncode == 0, listed.stderr
    assert f"{new_id}  current" in listed.stdout and f"{old_id}  older, read only" in listed.stdout

    rotated = _stepup("keys", "rotate", "--operator", "dana", config=rotated_config)
    assert rotated.returncode == 0, rotated.stderr
    out = rotated.stdout
    assert f"current key: {new_id} (first of 2 configured: {new_id}, {old_id})" in out
    assert "credentials scanned: 4" in out
    assert f"cannot be re-keyed, still need key {old_id}: 1 (totp: the method has no rekey hook)" in out
    assert "keys you may remove from the configuration now: none" in out
    assert _audit(rotated.stderr)[0]["details"]["operator"] == "dana"

    key_file.write_text(f"{new_key}\n")
    refused = _stepup("admin", "show-user", "alice", config=rotated_config)
    assert refused.returncode == 1
    assert f"secret_key_missing: secret key {old_id} is not configured" in refused.stderr
    assert "stepup keys rotate" in refused.stderr


# --- migrate ----------------------------------------------------------------------------------


def test_migrate_brings_a_version_1_database_forward(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE records (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, expires_at REAL);"
            "CREATE TABLE record_indexes (index_name TEXT NOT NULL, key TEXT NOT NULL, "
            "PRIMARY KEY (index_name, key)) WITHOUT ROWID;"
            "INSERT INTO records VALUES ('k', 'kept', NULL); PRAGMA user_version = 1;"
        )
    config = tmp_path / "stepup.toml"
    config.write_text(f'store = "sqlite:{path}"\nsecret_key = "{secrets.token_hex(32)}"\n')
    first = _stepup("migrate", config=config)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"store sqlite:{path}: schema version 1 -> 2",
        "  applied 2: the schema_version table",
    ]
    again = _stepup("migrate", config=config)
    assert again.stdout.strip() == f"store sqlite:{path}: schema version 2, up to date"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM records WHERE key = 'k'").fetchone() == ("kept",)


def test_migrate_on_a_store_without_a_schema_says_so(tmp_path: Path) -> None:
    config = tmp_path / "stepup.toml"
    config.write_text('store = "memory:"\n')
    done = _stepup("migrate", config=config)
    assert done.returncode == 0
    assert "no schema to migrate" in done.stdout
