"""Operators' commands: ``stepup migrate``, ``stepup keys`` and ``stepup admin``.

Each opens the store the configuration names, with the installed plugins, does one thing and
closes it. Every ``admin`` action but ``show-user`` asks for confirmation unless ``--yes``; every
one emits an audit event naming the operator (``--operator``, default the OS user), written to
standard error as a JSON line by the built-in audit sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from .cli_text import counted, text_table

if TYPE_CHECKING:
    from .admin import Admin, Operator, UserReport
    from .service import StepUpService

T = TypeVar("T")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="STEPUP_CONFIG",
    required=True,
    help="stepup.toml (or STEPUP_CONFIG).",
)
operator_option = click.option(
    "--operator", default=None, help="Who acts, named in the audit event (default: the OS user)."
)
yes_option = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")


def _run(work: Callable[[], Awaitable[T]]) -> T:
    from .errors import StepUpError

    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except StepUpError as exc:
        raise click.ClickException(f"{exc.code}: {exc}") from None


@contextlib.asynccontextmanager
async def _service(config_path: Path) -> AsyncIterator[StepUpService]:
    from .config import load_config
    from .service import StepUpService

    service = await StepUpService.create(load_config(config_path))
    try:
        yield service
    finally:
        await service.close()


def _show_audit_events() -> None:
    """Let the built-in audit sink's JSON lines reach standard error (unless logging is set up)."""
    audit = logging.getLogger("stepup.audit")
    if not audit.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("audit: %(message)s"))
        audit.addHandler(handler)
        audit.setLevel(logging.INFO)


def _operator(name: str | None) -> Operator:
    from .admin import Operator

    if name is None:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            raise click.UsageError("cannot tell who you are: pass --operator NAME") from None
    if not name.strip():
        raise click.UsageError("--operator must not be empty")
    return Operator(name=name.strip(), via="cli")


def _when(at: float | None) -> str:
    if at is None:
        return "never"
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- stepup migrate ---------------------------------------------------------------------------


@click.command()
@config_option
def migrate(config_path: Path) -> None:
    """Apply the store's pending schema migrations (SQLite, PostgreSQL)."""
    from .config import load_config
    from .plugins import get_plugin_manager
    from .store import open_store
    from .store.migrations import MigratingStore

    async def work() -> list[str]:
        config = load_config(config_path)
        store = await open_store(config.store, get_plugin_manager())
        try:
            if not isinstance(store, MigratingStore):
                return [f"store {config.store.split('?', 1)[0]}: no schema to migrate ({type(store).__name__})"]
            applied = list(getattr(store, "applied_at_open", [])) + await store.migrate()
            before = store.version_at_open or 0
            after = await store.schema_version()
            where = getattr(store, "where", None) or config.store.split("?", 1)[0]
            if not applied:
                return [f"store {where}: schema version {after}, up to date"]
            lines = [f"store {where}: schema version {before} -> {after}"]
            lines += [f"  applied {m.version}: {m.description}" for m in applied]
            return lines
        finally:
            await store.close()

    for line in _run(work):
        click.echo(line)


# --- stepup keys ------------------------------------------------------------------------------


@click.group()
def keys() -> None:
    """Secret keys: generate, list, rotate."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new random secret key (32 bytes, base64url)."""
    from .crypto import decode_secret_key, key_id

    value = secrets.token_urlsafe(32)
    click.echo(value)
    click.echo(f"key id: {key_id(decode_secret_key(value))}", err=True)


@keys.command("list")
@config_option
def keys_list(config_path: Path) -> None:
    """The configured keys' ids and which ones stored data still needs."""
    from .keyring import describe_need, read_key_ledger

    async def work() -> list[str]:
        async with _service(config_path) as service:
            ledger = await read_key_ledger(service.store)
            lines = []
            for index, kid in enumerate(service.keys.key_ids):
                role = "current" if index == 0 else "older, read only"
                needed = ledger.in_use.get(kid) if ledger else None
                if needed is not None:
                    needed = describe_need(kid, needed, service.keys.current_id)
                lines.append(f"{kid}  {role:<16}  {'needed: ' + needed if needed else 'not needed by stored data'}")
            return lines

    for line in _run(work):
        click.echo(line)


@keys.command("rotate")
@config_option
@operator_option
def keys_rotate(config_path: Path, operator: str | None) -> None:
    """Re-seal stored secrets under the first configured key and report what still needs older ones."""
    from .keyring import rotate_keys

    who = _operator(operator)
    _show_audit_events()

    async def work() -> list[str]:
        async with _service(config_path) as service:
            report = await rotate_keys(service, operator=who.name)
            return list(report.lines())

    for line in _run(work):
        click.echo(line)


# --- stepup admin -----------------------------------------------------------------------------


@click.group()
def admin() -> None:
    """Help a user: show, unlock, revoke grants, reset MFA."""


def _admin_action(config_path: Path, action: Callable[[Admin], Awaitable[T]]) -> T:
    from .admin import Admin

    _show_audit_events()

    async def work() -> T:
        async with _service(config_path) as service:
            return await action(Admin(service))

    return _run(work)


def _confirm(yes: bool, question: str) -> None:
    if not yes:
        click.confirm(question, abort=True)


CREDENTIAL_COLUMNS = ("ID", "METHOD", "FACTOR", "ALIAS", "CREATED", "LAST USED", "DEFAULT", "DETAILS")
GRANT_COLUMNS = ("SESSION", "SCOPES", "KIND", "METHOD", "EXPIRES")


def _report_lines(report: UserReport) -> list[str]:
    """``show-user`` as text: the credentials and the live grants each as a table whose columns
    line up (ids differ in length), under a heading that counts them."""
    lines = [f"user {report.user_id}"]
    lines.append(f"credentials ({len(report.credentials)}):")
    if report.credentials:
        credential_rows = [
            (
                c.id,
                c.method,
                c.factor.value,
                f'"{c.alias}"' if c.alias else "",
                _when(c.created_at),
                _when(c.last_used_at),
                "yes" if c.is_default else "",
                json.dumps(c.details, sort_keys=True) if c.details else "",
            )
            for c in report.credentials
        ]
        lines += [f"  {line}" for line in text_table(CREDENTIAL_COLUMNS, credential_rows)]
    lines.append(f"live grants ({len(report.grants)}):")
    if report.grants:
        grant_rows = [
            (
                g.session_id,
                " ".join(g.scopes),
                "single-use" if g.single_use else "time-bound",
                g.method,
                _when(g.expires_at),
            )
            for g in report.grants
        ]
        lines += [f"  {line}" for line in text_table(GRANT_COLUMNS, grant_rows)]
    state = "LOCKED OUT" if report.lockout.locked else "not locked"
    lines.append(
        f"lockout: {counted(report.lockout.failures, 'failure')} in the current window "
        f"(locks at {report.lockout.limit}, window {report.lockout.window:g} s): {state}"
    )
    return lines


@admin.command("show-user")
@config_option
@operator_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.argument("user_id")
def show_user(config_path: Path, operator: str | None, as_json: bool, user_id: str) -> None:
    """A user's credentials (never secrets), live grants and lockout state."""
    from .serialization import unstructure

    who = _operator(operator)
    report = _admin_action(config_path, lambda a: a.show_user(user_id, who))
    if as_json:
        click.echo(json.dumps(unstructure(report), indent=2))
    else:
        for line in _report_lines(report):
            click.echo(line)


@admin.command("unlock")
@config_option
@operator_option
@yes_option
@click.argument("user_id")
def unlock(config_path: Path, operator: str | None, yes: bool, user_id: str) -> None:
    """Clear a user's failure lockout."""
    who = _operator(operator)
    _confirm(yes, f"Clear the lockout of user {user_id!r}?")
    done = _admin_action(config_path, lambda a: a.unlock(user_id, who))
    click.echo(f"unlocked {user_id}: {counted(done.failures_cleared, 'failure')} cleared")


@admin.command("revoke-grants")
@config_option
@operator_option
@yes_option
@click.option("--session", "session_id", default=None, help="Only this session's grants.")
@click.argument("user_id")
def revoke_grants(config_path: Path, operator: str | None, yes: bool, session_id: str | None, user_id: str) -> None:
    """Revoke a user's live elevated access tokens (every session, or one)."""
    who = _operator(operator)
    scope = f"session {session_id!r} of user {user_id!r}" if session_id else f"every session of user {user_id!r}"
    _confirm(yes, f"Revoke the grants of {scope}?")
    done = _admin_action(config_path, lambda a: a.revoke_grants(user_id, who, session_id))
    click.echo(f"revoked {counted(done.revoked, 'grant')} of {scope}")


@admin.command("delete-credential")
@config_option
@operator_option
@yes_option
@click.argument("user_id")
@click.argument("credential_id")
def delete_credential(config_path: Path, operator: str | None, yes: bool, user_id: str, credential_id: str) -> None:
    """Delete one of a user's stored credentials."""
    who = _operator(operator)

    async def describe(a: Admin) -> str:
        c = await a.credential(user_id, credential_id)
        return f"{c.method} credential {c.id}" + (f' "{c.alias}"' if c.alias else "")

    what = _admin_action(config_path, describe)
    _confirm(yes, f"Delete the {what} of user {user_id!r}?")
    view = _admin_action(config_path, lambda a: a.delete_credential(user_id, credential_id, who))
    click.echo(f"deleted {view.method} credential {view.id} of {user_id}")


@admin.command("reset-mfa")
@config_option
@operator_option
@yes_option
@click.argument("user_id")
def reset_mfa(config_path: Path, operator: str | None, yes: bool, user_id: str) -> None:
    """Remove a user's MFA credentials and recovery codes and revoke their grants."""
    who = _operator(operator)

    async def describe(a: Admin) -> list[str]:
        return [f"{c.method} {c.id}" for c in await a.mfa_credentials(user_id)]

    listed = _admin_action(config_path, describe)
    _confirm(
        yes,
        f"Reset MFA of user {user_id!r}: remove {counted(len(listed), 'credential')}"
        + (f" ({', '.join(listed)})" if listed else "")
        + " and revoke every grant?",
    )
    done = _admin_action(config_path, lambda a: a.reset_mfa(user_id, who))
    removed = ", ".join(f"{c.method} {c.id}" for c in done.removed) or "none"
    click.echo(
        f"reset MFA of {user_id}: removed {counted(len(done.removed), 'credential')} ({removed}); "
        f"revoked {counted(done.grants_revoked, 'grant')}"
    )


COMMANDS: tuple[click.Command, ...] = (admin, keys, migrate)
