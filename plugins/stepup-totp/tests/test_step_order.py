"""RFC 6238 section 5.2: once a device accepted a code, it accepts no code of that step or an
earlier one. The device's high-water mark is kept in the store and moved by compare-and-set, so
it holds for every store and for every server instance sharing it (Redis across processes is
tested in stepup-redis' multi-instance tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from stepup_totp.otp import code_at

from stepup_core import errors
from stepup_core.models import EnrollmentCompletion, EnrollmentRequest, Principal
from stepup_core.store.sqlite import SQLiteStore

ALICE = Principal("alice", "s1")
PERIOD = 30


async def test_an_older_step_is_refused_after_a_newer_one(flows: Any, clock: Any, events: Any) -> None:
    await flows.enrol(ALICE)
    clock.advance(300)
    secret = flows.app.entries[0].key.secret
    now = clock.now()
    # The server is at step T: the app of a device whose clock runs ahead shows T+1 first.
    assert (await flows.verify(ALICE, code=code_at(secret, now + PERIOD))).method == "totp"
    for offset, says in ((0, "older than the last code accepted"), (-PERIOD, "older than the last code accepted"),
                         (PERIOD, "already used")):
        with pytest.raises(errors.ReplayDetected) as info:
            await flows.verify(ALICE, code=code_at(secret, now + offset))
        assert info.value.code == "replay_detected"
        assert says in info.value.message and "next code" in info.value.message
    # Once the server reaches T+2, that code is accepted: order, not time, is what is refused.
    clock.advance(2 * PERIOD)
    assert (await flows.verify(ALICE, code=code_at(secret, clock.now()))).method == "totp"
    assert [e.reason for e in events.of_type("verification_failed")] == ["replay_detected"] * 3


async def test_after_enrolment_the_previous_steps_code_says_what_happened(service: Any, flows: Any, clock: Any) -> None:
    """Enrolled with the code of step T: the unused code of T-1 is refused, and the message says it
    is older than the enrolment's code (it was never used to enrol anything)."""
    start = await service.begin_enrollment(ALICE, EnrollmentRequest(method="totp"))
    secret = start.data["secret"]
    await service.complete_enrollment(
        ALICE, start.enrollment_id, EnrollmentCompletion(response={"code": code_at(secret, clock.now())})
    )
    with pytest.raises(errors.ReplayDetected) as info:
        await flows.verify(ALICE, code=code_at(secret, clock.now() - PERIOD))
    assert "older than the one that confirmed the device's enrolment" in info.value.message
    assert "used to enrol" not in info.value.message
    with pytest.raises(errors.ReplayDetected) as again:
        await flows.verify(ALICE, code=code_at(secret, clock.now()))
    assert "confirmed the device's enrolment" in again.value.message
    assert (await flows.verify(ALICE, code=code_at(secret, clock.now() + PERIOD))).method == "totp"


async def test_removing_the_device_removes_its_mark(flows: Any, clock: Any) -> None:
    from stepup_totp.verifier import last_step_key

    device = await flows.enrol(ALICE)
    clock.advance(300)
    await flows.verify(ALICE)
    store = flows.service.store
    assert await store.get(last_step_key(device.id)) is not None
    token = await flows.token_for(ALICE, "credential:unlink")
    await flows.service.delete_credential(ALICE, device.id, token)
    assert await store.get(last_step_key(device.id)) is None


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_the_mark_holds_across_instances_sharing_a_store_under_concurrency(
    make_service: Any, flows_for: Any, new_pm: Any, clock: Any, store: Any, app: Any, tmp_path: Path, backend: str
) -> None:
    """Two server instances, each with its own connection to the store: once one accepted step
    T+1, neither accepts T+1 or T again, even with forty submissions racing."""
    if backend == "sqlite":
        path = tmp_path / "stepup.sqlite3"
        shared = [await SQLiteStore.open(str(path), clock), await SQLiteStore.open(str(path), clock)]
    else:
        shared = [store, store]
    limits = {"max_attempts": 100, "lockout_failures": 1000}
    first = flows_for(await make_service(pm_=new_pm(), store_=shared[0], limits=limits))
    second = flows_for(await make_service(pm_=new_pm(), store_=shared[1], limits=limits))
    await first.enrol(ALICE)
    clock.advance(300)
    secret = app.entries[0].key.secret
    now = clock.now()
    assert (await second.verify(ALICE, code=code_at(secret, now + PERIOD))).method == "totp"
    attempts = [
        (first if i % 2 else second).verify(ALICE, code=code_at(secret, now + (PERIOD if i % 4 < 2 else 0)))
        for i in range(40)
    ]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert all(isinstance(r, errors.ReplayDetected) for r in results), results

    # A race between a newer and an older code: whatever the order, only later steps ever win.
    clock.advance(2 * PERIOD)
    now = clock.now()
    steps = [now - PERIOD, now, now + PERIOD] * 3
    results = await asyncio.gather(
        *((first if i % 2 else second).verify(ALICE, code=code_at(secret, at)) for i, at in enumerate(steps)),
        return_exceptions=True,
    )
    accepted = [at for at, r in zip(steps, results, strict=True) if not isinstance(r, BaseException)]
    assert 1 <= len(accepted) <= 3 and len(set(accepted)) == len(accepted)
    from stepup_totp.verifier import last_step_key

    mark = int(await shared[0].get(last_step_key(app.entries[0].credential_id or "")) or -1)
    assert mark == int(max(accepted) // PERIOD)
