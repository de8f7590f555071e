"""A stepup server in its own process for the crash test: SQLite store, the PIN method, the
webhooks plugin. Prints ``{"url": ...}`` once listening; runs until killed or SIGTERM.

    python webhook_server.py STORE_PATH SETTINGS_JSON
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import attrs


async def main(store_path: str, settings_json: str) -> None:
    import stepup_webhooks.plugin

    from stepup_core.config import config_from_mapping
    from stepup_core.identify import StaticTokenIdentify
    from stepup_core.models import CredentialFormat, Factor, Principal
    from stepup_core.plugins import get_plugin_manager
    from stepup_core.server import build_app, serve_app
    from stepup_core.service import StepUpService
    from stepup_core.testing.methods import PinVerifier, ThrowawayPlugin
    from stepup_core.testing.stack import session_token

    pm = get_plugin_manager(load_entrypoints=False)
    pin = attrs.evolve(PinVerifier(factor=Factor.MFA, formats=(CredentialFormat.TOTP,), sign_in=False))
    pm.register(ThrowawayPlugin([pin]), name="methods")
    pm.register(stepup_webhooks.plugin, name="webhooks")
    settings = {"store": f"sqlite:{store_path}", "secret_key": "ab" * 32, **json.loads(settings_json)}
    service = await StepUpService.create(config_from_mapping(settings), pm=pm)
    identify = StaticTokenIdentify.from_mapping({session_token("alice"): Principal("alice", "alice-session")})
    try:
        async with serve_app(build_app(service, identify)) as url:
            print(json.dumps({"url": url}), flush=True)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await stop.wait()
    finally:
        await service.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
