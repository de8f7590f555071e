"""The per-user lockout holds for enrolment completions sent at once.

Wrong codes sent concurrently to many pending email enrolments, over HTTP to the real server on
a SQLite store (whose operations really interleave), are each counted before they are checked:
no more guesses are evaluated than ``lockout_failures`` allows, however many arrive together.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from stepup_otp import plugin as otp_plugin
from stepup_otp.client import Mailbox

from stepup_core.clock import ManualClock
from stepup_core.config import config_from_mapping
from stepup_core.plugins import get_plugin_manager
from stepup_core.service import StepUpService
from stepup_core.testing.methods import ThrowawayPlugin
from stepup_core.testing.stack import StepUpStack

ENROLMENTS = 10
GUESSES = 60
LOCKOUT = 10


async def test_concurrent_wrong_enrolment_codes_are_held_to_the_lockout(tmp_path: Path) -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(otp_plugin, name="otp")
    mailbox = Mailbox()
    pm.register(mailbox, name="otp-mailbox")
    audit = ThrowawayPlugin()
    pm.register(audit, name="audit")
    config = config_from_mapping(
        {
            "store": f"sqlite:{tmp_path / 'stepup.sqlite3'}",
            "secret_key": secrets.token_hex(32),
            "limits": {
                "max_attempts": 100,
                "lockout_failures": LOCKOUT,
                "max_live_enrollments": ENROLMENTS,
                "begin_limit": 100,
            },
            "plugins": {"otp": {"max_sends_per_hour": 100}},
        }
    )
    service = await StepUpService.create(config, pm=pm, clock=ManualClock())
    try:
        async with StepUpStack.serve(service, users=["mallory"]) as stack:
            pending = []
            for index in range(ENROLMENTS):
                status, body = await stack.api(
                    "mallory", "POST", "/enrollments", {"method": "otp", "params": {"email": f"m{index}@example.com"}}
                )
                assert status == 201, body
                pending.append(body["enrollmentId"])
            sent = {d.address: d.code for d in mailbox.deliveries}
            wrong = next(c for c in (f"{n:06d}" for n in range(1000)) if c not in sent.values())

            answers = await asyncio.gather(
                *(
                    stack.api("mallory", "POST", f"/enrollments/{pending[i % ENROLMENTS]}",
                              {"response": {"code": wrong}})
                    for i in range(GUESSES)
                )
            )
    finally:
        await service.close()

    evaluated = audit.of_type("verification_failed")
    refused = [body["code"] for status, body in answers if status == 429]
    assert len(evaluated) == LOCKOUT, f"{len(evaluated)} guesses evaluated, lockout is {LOCKOUT}"
    assert sorted(status for status, _ in answers) == [400] * LOCKOUT + [429] * (GUESSES - LOCKOUT)
    assert set(refused) == {"locked_out"}
    assert all(body["code"] == "verification_failed" for status, body in answers if status == 400)
    assert audit.of_type("credential_enrolled") == []
