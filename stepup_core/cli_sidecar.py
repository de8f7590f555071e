"""``stepup credential`` (a service credential for the sidecar) and ``stepup jwks`` (the keys
that sign grants: list, rotate, remove)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .cli_operations import _run, _service, config_option

if TYPE_CHECKING:
    from .signing import KeyRing


@click.command("credential", short_help="Make a service credential for the sidecar.")
@click.option("--name", default="my-service", show_default=True, help="The client's name in [introspection.clients].")
def credential(name: str) -> None:
    """Make a service credential for the sidecar (POST {prefix}/introspect)."""
    from .introspection import new_service_credential

    made, digest = new_service_credential()
    click.echo(f"Give the service this credential (shown once; stepup keeps only its hash):\n\n  {made}\n")
    click.echo(f'Add to stepup.toml:\n\n  [introspection.clients]\n  {json.dumps(name)} = "{digest}"')


def _with_keyring(config_path: Path, action: Any) -> Any:
    async def work() -> Any:
        async with _service(config_path) as service:
            return await action(service.keyring, service.clock.now())

    return _run(work)


@click.group()
def jwks() -> None:
    """The keys that sign grants (scopes with signed = true)."""


@jwks.command("list")
@config_option
def jwks_list(config_path: Path) -> None:
    """Print the signing keys as JSON: id, algorithm, created, retired, published until."""

    async def action(keyring: KeyRing, now: float) -> list[dict[str, Any]]:
        return [
            {
                "kid": k.kid,
                "alg": k.alg,
                "createdAt": k.created_at,
                "retiredAt": k.retired_at,
                "publishedUntil": k.publish_until,
                "published": k.publish_until is None or k.publish_until > now,
            }
            for k in await keyring.stored()
        ]

    click.echo(json.dumps(_with_keyring(config_path, action), indent=2))


@jwks.command("rotate")
@config_option
def jwks_rotate(config_path: Path) -> None:
    """Retire the current key now; the next grant is signed by a new one."""

    async def action(keyring: KeyRing, now: float) -> str:
        return (await keyring.rotate()).kid

    kid = _with_keyring(config_path, action)
    click.echo(f"signing with key {kid}; the retired key stays published until its last token expires")


@jwks.command("remove")
@config_option
@click.argument("kid")
def jwks_remove(config_path: Path, kid: str) -> None:
    """Withdraw a key at once (a compromised key): its tokens are refused from now on."""

    async def action(keyring: KeyRing, now: float) -> bool:
        return await keyring.remove(kid)

    if not _with_keyring(config_path, action):
        raise click.ClickException(f"no signing key {kid!r}")
    click.echo(f"removed key {kid}: it left jwks.json and its tokens are refused")


COMMANDS: tuple[click.Command, ...] = (credential, jwks)
