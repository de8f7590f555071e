"""The ``stepup`` command: ``plugins``, ``serve`` and ``demo``; for operators ``migrate``,
``keys`` and ``admin`` (in :mod:`stepup_core.cli_operations`); ``credential`` and ``jwks`` for the
sidecar and signed grants (in :mod:`stepup_core.cli_sidecar`).

Imports stay inside the commands: ``stepup plugins`` loads the plugin modules (cheap by
contract) and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from .config import StepUpConfig
    from .service import StepUpService


@click.group()
@click.version_option(package_name="stepup-core", prog_name="stepup")
def main() -> None:
    """Step-up authentication for Python services."""


@main.command()
@click.option("--all", "include_builtin", is_flag=True, help="Include the built-in plugins of stepup-core.")
def plugins(include_builtin: bool) -> None:
    """List installed plugins as JSON: name, package, version and hooks."""
    from .plugins import describe_plugins, get_plugin_manager

    pm = get_plugin_manager()
    click.echo(json.dumps(describe_plugins(pm, include_builtin=include_builtin), indent=2))
    for failure in pm.load_failures:
        click.echo(f"warning: plugin {failure.name!r} failed to load: {failure.error}", err=True)


def _dev_origin(base_url: str) -> str:
    """The page origin development mode accepts passkeys from: this server's port on
    ``localhost`` (browsers refuse passkeys on IP addresses such as 127.0.0.1)."""
    return f"http://localhost:{base_url.rsplit(':', 1)[1]}"


def _dev_banner(base_url: str, prefix: str, token: str, store: str) -> str:
    check = (
        f"curl -s -X POST {base_url}{prefix}/check -H 'Authorization: Bearer {token}' "
        "-H 'Content-Type: application/json' -d '{\"scope\": \"user:update\"}'"
    )
    return "\n".join(
        [
            "=" * 78,
            "stepup DEVELOPMENT MODE: started without --config.",
            "  Callers are identified by one token generated now; every caller holding it is",
            "  user 'dev-user'. Do not expose this server. For real use write a stepup.toml",
            "  with an [identify] table (signed session JWTs) and pass --config.",
            f"  Store: {store}",
            f"  Passkeys: pages on {_dev_origin(base_url)} (browsers refuse them on IP addresses)",
            f"  Development token: {token}",
            "  Try:",
            f"    {check}",
            f"    curl -s {base_url}{prefix}/methods",
            "=" * 78,
        ]
    )


async def _serve(config_path: Path | None, host: str, port: int, ready: Any = None) -> None:
    import attrs

    from .config import load_config
    from .plugins import get_plugin_manager
    from .server.identify import DevelopmentIdentify, identify_from_config
    from .service import StepUpService
    from .startup import installed_plugin_names

    development = config_path is None
    config = load_config(config_path)
    identify: Any = DevelopmentIdentify() if development else identify_from_config(config.identify)
    pm = get_plugin_manager()
    # Bind first: development mode accepts passkeys from pages on the port actually served
    # (when the passkey method is installed: a table for a missing plugin stops the start).
    sock = socket.create_server((host, port))
    with contextlib.closing(sock):
        if development and "passkey" in installed_plugin_names(pm):
            bound = f"http://localhost:{sock.getsockname()[1]}"
            config = attrs.evolve(config, plugins={**config.plugins, "passkey": {"origins": [_dev_origin(bound)]}})
        service = await StepUpService.create(config, pm=pm)
        await _run(service, identify, config, sock, development)


async def _run(
    service: StepUpService, identify: Any, config: StepUpConfig, sock: socket.socket, development: bool
) -> None:
    from .server import build_app, serve_app
    from .server.identify import JwtIdentify
    from .server.serve import ACCESS_LOG

    try:
        if not development:
            service.check_code_delivery()
        app = build_app(service, identify)
        async with serve_app(app, sock=sock, access_log=ACCESS_LOG) as base_url:
            prefix = service.config.server.prefix
            if development:
                click.echo(_dev_banner(base_url, prefix, identify.token, config.store))
            else:
                click.echo(f"identifying callers by {config.identify.mode}")
            click.echo(f"stepup listening on {base_url}{prefix} (store {config.store}); press Ctrl+C to stop")
            sys.stdout.flush()
            await _until_stopped()
            click.echo("stepup stopped")
    finally:
        if isinstance(identify, JwtIdentify):
            await identify.close()
        await service.close()


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="STEPUP_CONFIG",
    default=None,
    help="stepup.toml; without it the server starts in development mode.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="Log to standard error from this level (info adds a line per request and per audit event); "
    "secrets are redacted.",
)
def serve(config_path: Path | None, host: str, port: int, log_level: str) -> None:
    """Run the stepup server beside an existing application."""
    from .errors import StepUpError
    from .redaction import configure_logging

    configure_logging(log_level.upper())

    try:
        asyncio.run(_serve(config_path, host, port))
    except StepUpError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"could not listen on {host}:{port}: {exc.strerror or exc}") from None


async def _until_stopped() -> None:
    """Wait for Ctrl+C (SIGINT) or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # non-Unix
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _web_demo(host: str, port: int) -> None:
    from .webdemo import running_demo

    async with running_demo(host, port) as (address, demo):
        methods = ", ".join(sorted(demo.service.verifiers)) or "none (install the method plugins)"
        click.echo(f"stepup web demo on {address} (methods: {methods})")
        click.echo("open it in a browser; codes sent by email are printed here too; press Ctrl+C to stop")
        sys.stdout.flush()
        await _until_stopped()
    click.echo("stepup web demo stopped")


@main.command()
@click.option("--web", is_flag=True, help="Serve a web application on loopback that steps up with the built-in prompt.")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --web: the interface to listen on.")
@click.option(
    "--port", default=8400, show_default=True, type=click.IntRange(0, 65535), help="With --web: 0 for any free port."
)
def demo(web: bool, host: str, port: int) -> None:
    """Step up with every installed method end to end and print a table.

    With --web, serve a web application on loopback instead, where a person steps up in a
    browser through the built-in prompt; it prints its address.
    """
    if web:
        try:
            asyncio.run(_web_demo(host, port))
        except OSError as exc:
            raise click.ClickException(f"could not listen on {host}:{port}: {exc.strerror or exc}") from None
        return
    from .demo import run_demo

    status = asyncio.run(run_demo(sys.stdout))
    sys.exit(status)


def _add_operations() -> None:
    from .cli_operations import COMMANDS
    from .cli_sidecar import COMMANDS as SIDECAR_COMMANDS

    for command in (*COMMANDS, *SIDECAR_COMMANDS):
        main.add_command(command)


_add_operations()

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="stepup")
