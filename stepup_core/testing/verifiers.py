"""The verifier conformance suite: what every method plugin must get right.

Subclass :class:`VerifierConformanceSuite` in your plugin's tests and fill in five methods::

    from stepup_core.testing.verifiers import Harness, VerifierConformanceSuite

    class TestPinConformance(VerifierConformanceSuite):
        method = "pin"

        def plugins(self):
            import stepup_pin.plugin
            return [stepup_pin.plugin]

        async def enroll(self, harness, principal):
            ...  # enrol a credential for principal through harness.service; return a handle

        async def valid_response(self, harness, handle, challenge):
            return {"pin": handle.pin}

        async def wrong_response(self, harness, handle, challenge):
            return {"pin": "0000"}

        def malformed_responses(self):
            return [{}, {"pin": 7}, {"pin": "x" * 10_000}]

The suite then checks, through the real :class:`~stepup_core.service.StepUpService` on a memory
store with a :class:`~stepup_core.clock.ManualClock`: a valid response grants a token; a replay
is refused; challenges expire; the attempt budget stops guessing; challenges and tokens are bound
to their user, session and scopes; audit events are emitted; malformed responses get a clear
error with a stable code and never a grant.

Methods whose factor is MFA with ``fallback`` (recovery codes) need another MFA credential:
call ``await harness.add_companion_mfa(principal)`` in ``enroll``.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import attrs
import pytest

from .. import errors
from ..clock import ManualClock
from ..config import config_from_mapping
from ..models import (
    AuditEvent,
    ChallengeRequest,
    ChallengeStart,
    Credential,
    CredentialFormat,
    Factor,
    Interaction,
    IssuedToken,
    Principal,
    VerifyRequest,
)
from ..plugins import get_plugin_manager
from ..service import StepUpService
from ..store.memory import MemoryStore
from ..verifier import Verifier
from .methods import PinVerifier, ThrowawayPlugin

ALICE = Principal("conformance-alice", "session-a")
BOB = Principal("conformance-bob", "session-b")
SCOPE = "user:update"
OTHER_SCOPE = "user:delete"
SECRET_KEY = "c2VjcmV0LWtleS1mb3ItdGhlLWNvbmZvcm1hbmNlLXN1aXRlLW9ubHk"


def companion_mfa_verifier() -> PinVerifier:
    """A stand-in MFA method so fallback methods (recovery codes) have the MFA they need; its
    PINs are random, so it never verifies."""
    return PinVerifier(
        name="conformance-companion",
        factor=Factor.MFA,
        formats=(CredentialFormat.TOTP,),
        requires_challenge=False,
        package="stepup-core",
        sign_in=False,
    )


@attrs.define
class Harness:
    """What a conformance test drives: the service, its clock and store, recorded events, and
    credentials the "application" supplies (``app_credentials[user_id]``)."""

    service: StepUpService
    clock: ManualClock
    store: MemoryStore
    recorder: ThrowawayPlugin

    @property
    def events(self) -> list[AuditEvent]:
        return self.recorder.events

    @property
    def app_credentials(self) -> dict[str, list[Credential]]:
        return self.recorder.app_credentials

    async def add_companion_mfa(self, principal: Principal) -> None:
        from ..models import EnrollmentRequest

        request = EnrollmentRequest(method="conformance-companion", params={"pin": secrets.token_hex(16)})
        await self.service.begin_enrollment(principal, request)


class VerifierConformanceSuite:
    """Subclass per method; see the module docstring."""

    #: The method name under test.
    method: ClassVar[str]

    # --- what a subclass provides -------------------------------------------------------------

    def plugins(self) -> list[object]:
        """Plugin objects or modules to register (the method's ``plugin`` module, at least)."""
        raise NotImplementedError

    def plugin_config(self) -> dict[str, Any]:
        """The ``[plugins.<method>]`` table for the service."""
        return {}

    async def enroll(self, harness: Harness, principal: Principal) -> Any:
        """Give ``principal`` one credential of this method; return a handle the response
        methods below understand."""
        raise NotImplementedError

    async def valid_response(self, harness: Harness, handle: Any, challenge: ChallengeStart | None) -> dict[str, Any]:
        """A response that proves possession (for a redirect method: the callback query)."""
        raise NotImplementedError

    async def wrong_response(self, harness: Harness, handle: Any, challenge: ChallengeStart | None) -> dict[str, Any]:
        """A well-formed response that must fail (a wrong code, another key's signature)."""
        raise NotImplementedError

    def malformed_responses(self) -> list[dict[str, Any]]:
        """Responses with missing fields, wrong types, absurd sizes."""
        raise NotImplementedError

    # --- machinery ----------------------------------------------------------------------------

    @pytest.fixture
    async def harness(self) -> AsyncIterator[Harness]:
        clock = ManualClock()
        store = MemoryStore(clock=clock)
        pm = get_plugin_manager(load_entrypoints=False)
        recorder = ThrowawayPlugin([companion_mfa_verifier()])
        pm.register(recorder, name="conformance-recorder")
        for index, plugin in enumerate(self.plugins()):
            if pm.is_registered(plugin):
                continue
            pm.register(plugin, name=f"conformance-plugin-{index}")
        config = config_from_mapping(
            {
                "store": "memory:",
                "secret_key": SECRET_KEY,
                "server": {"public_url": "http://127.0.0.1:9"},
                "plugins": {self.method: self.plugin_config()},
            }
        )
        service = await StepUpService.create(config, pm=pm, clock=clock, store=store)
        try:
            yield Harness(service=service, clock=clock, store=store, recorder=recorder)
        finally:
            await service.close()

    def _verifier(self, harness: Harness) -> Verifier:
        verifier = harness.service.verifiers.get(self.method)
        assert verifier is not None, f"the plugins under test did not register a verifier named {self.method!r}"
        return verifier

    async def begin(
        self, harness: Harness, principal: Principal, scopes: tuple[str, ...] = (SCOPE,)
    ) -> ChallengeStart | None:
        if not self._verifier(harness).requires_challenge:
            return None
        return await harness.service.begin(principal, ChallengeRequest(method=self.method, requested_scopes=scopes))

    async def submit(
        self,
        harness: Harness,
        principal: Principal,
        challenge: ChallengeStart | None,
        response: dict[str, Any],
        scopes: tuple[str, ...] = (SCOPE,),
    ) -> IssuedToken:
        """Send a response the way this method's clients do: ``/verify``, or for redirect
        methods the callback followed by the owner's status poll."""
        verifier = self._verifier(harness)
        if verifier.interaction is Interaction.REDIRECT:
            assert challenge is not None
            await harness.service.complete_callback(self.method, response)
            state = await harness.service.challenge_status(principal, challenge.challenge_id)
            assert state.grant is not None, "a verified redirect challenge must hand its grant to the owner"
            return state.grant
        return await harness.service.verify(
            principal,
            VerifyRequest(
                method=self.method,
                challenge_id=challenge.challenge_id if challenge else None,
                response=response,
                requested_scopes=scopes,
            ),
        )

    # --- the checks ------------------------------------------------------------------------------

    async def test_registers_a_complete_verifier(self, harness: Harness) -> None:
        verifier = self._verifier(harness)
        assert isinstance(verifier, Verifier), "the verifier lacks attributes or methods of the protocol"
        assert verifier.name == self.method
        assert verifier.challenge_ttl > 0
        assert verifier.package.startswith("stepup-") or verifier.package

    async def test_valid_response_grants_a_scoped_token(self, harness: Harness) -> None:
        handle = await self.enroll(harness, ALICE)
        challenge = await self.begin(harness, ALICE)
        issued = await self.submit(harness, ALICE, challenge, await self.valid_response(harness, handle, challenge))
        assert issued.elevated_access_token.startswith("sut_")
        assert issued.scopes == (SCOPE,) and issued.method == self.method
        assert not (await harness.service.check(ALICE, SCOPE, issued.elevated_access_token)).is_required

    async def test_replay_is_refused(self, harness: Harness) -> None:
        handle = await self.enroll(harness, ALICE)
        challenge = await self.begin(harness, ALICE)
        response = await self.valid_response(harness, handle, challenge)
        await self.submit(harness, ALICE, challenge, response)
        with pytest.raises(errors.StepUpError) as info:
            await self.submit(harness, ALICE, challenge, response)
        assert not isinstance(info.value, errors.PluginError | errors.VerifierCrashed), (
            "a replay must be refused cleanly, not crash"
        )

    async def test_challenge_expires(self, harness: Harness) -> None:
        """A challenge expires; for a method that needs none (TOTP), one that was started still does."""
        verifier = self._verifier(harness)
        handle = await self.enroll(harness, ALICE)
        challenge = await harness.service.begin(ALICE, ChallengeRequest(method=self.method, requested_scopes=(SCOPE,)))
        response = await self.valid_response(harness, handle, challenge)
        harness.clock.advance(verifier.challenge_ttl + 1)
        refusals: tuple[type[errors.StepUpError], ...] = (errors.ChallengeExpired,)
        if verifier.requires_challenge:
            refusals += (errors.VerificationFailed,)
        with pytest.raises(refusals):
            await self.submit(harness, ALICE, challenge, response)

    async def test_attempt_budget_stops_guessing(self, harness: Harness) -> None:
        if self._verifier(harness).interaction is Interaction.REDIRECT:
            pytest.skip("not applicable: a redirect challenge accepts exactly one callback")
        handle = await self.enroll(harness, ALICE)
        challenge = await self.begin(harness, ALICE)
        budget = harness.service.config.limits.max_attempts
        for _ in range(budget - 1):
            with pytest.raises(errors.VerificationFailed) as info:
                await self.submit(harness, ALICE, challenge, await self.wrong_response(harness, handle, challenge))
            assert not isinstance(info.value, errors.AttemptsExhausted)
        with pytest.raises(errors.AttemptsExhausted):
            await self.submit(harness, ALICE, challenge, await self.wrong_response(harness, handle, challenge))
        with pytest.raises(errors.AttemptsExhausted):  # even the right answer is refused now
            await self.submit(harness, ALICE, challenge, await self.valid_response(harness, handle, challenge))
        assert any(e.type == "attempts_exhausted" for e in harness.events)

    async def test_bound_to_user(self, harness: Harness) -> None:
        handle = await self.enroll(harness, ALICE)
        await self.enroll(harness, BOB)
        challenge = await self.begin(harness, ALICE)
        response = await self.valid_response(harness, handle, challenge)
        if challenge is not None and self._verifier(harness).interaction is not Interaction.REDIRECT:
            with pytest.raises(errors.ChallengeNotFound):
                await self.submit(harness, BOB, challenge, response)
        elif challenge is None:
            alice_credentials = await harness.service.list_credentials(ALICE)
            mine = [c.id for c in alice_credentials if c.method == self.method]
            with pytest.raises((errors.CredentialNotFound, errors.VerificationFailed)):
                await harness.service.verify(
                    BOB,
                    VerifyRequest(
                        method=self.method, credential_id=mine[0], response=response, requested_scopes=(SCOPE,)
                    ),
                )
        issued = await self.submit(harness, ALICE, challenge, response)
        assert (await harness.service.check(BOB, SCOPE, issued.elevated_access_token)).is_required

    async def test_bound_to_session(self, harness: Harness) -> None:
        handle = await self.enroll(harness, ALICE)
        other_session = Principal(ALICE.user_id, "another-session")
        challenge = await self.begin(harness, ALICE)
        response = await self.valid_response(harness, handle, challenge)
        if challenge is not None and self._verifier(harness).interaction is not Interaction.REDIRECT:
            with pytest.raises(errors.ChallengeNotFound):
                await self.submit(harness, other_session, challenge, response)
        issued = await self.submit(harness, ALICE, challenge, response)
        assert (await harness.service.check(other_session, SCOPE, issued.elevated_access_token)).is_required
        if challenge is not None and self._verifier(harness).interaction is Interaction.REDIRECT:
            with contextlib.suppress(errors.ChallengeNotFound):
                await harness.service.challenge_status(other_session, challenge.challenge_id)
                raise AssertionError("another session must not see the challenge")

    async def test_bound_to_scope(self, harness: Harness) -> None:
        handle = await self.enroll(harness, ALICE)
        challenge = await self.begin(harness, ALICE)
        issued = await self.submit(harness, ALICE, challenge, await self.valid_response(harness, handle, challenge))
        assert (await harness.service.check(ALICE, OTHER_SCOPE, issued.elevated_access_token)).is_required
        if challenge is not None and self._verifier(harness).interaction is not Interaction.REDIRECT:
            challenge = await self.begin(harness, ALICE)
            response = await self.valid_response(harness, handle, challenge)
            with pytest.raises(errors.InvalidScope):
                await self.submit(harness, ALICE, challenge, response, scopes=(OTHER_SCOPE,))

    async def test_events_are_emitted(self, harness: Harness) -> None:
        handle = await self.enroll(harness, ALICE)
        challenge = await self.begin(harness, ALICE)
        if self._verifier(harness).interaction is not Interaction.REDIRECT:
            with pytest.raises(errors.VerificationFailed):
                await self.submit(harness, ALICE, challenge, await self.wrong_response(harness, handle, challenge))
            assert any(e.type == "verification_failed" and e.method == self.method for e in harness.events)
        issued = await self.submit(harness, ALICE, challenge, await self.valid_response(harness, handle, challenge))
        grants = [e for e in harness.events if e.type == "grant_issued" and e.method == self.method]
        assert grants and grants[-1].user_id == ALICE.user_id and grants[-1].scopes == (SCOPE,)
        assert all(issued.elevated_access_token not in repr(e) for e in harness.events)

    async def test_malformed_responses_get_clear_errors(self, harness: Harness) -> None:
        await self.enroll(harness, ALICE)
        malformed = self.malformed_responses()
        assert malformed, "list at least one malformed response"
        for response in malformed:
            challenge = await self.begin(harness, ALICE)
            with pytest.raises(errors.StepUpError) as info:
                await self.submit(harness, ALICE, challenge, response)
            assert not isinstance(info.value, errors.PluginError | errors.VerifierCrashed), (
                f"{response!r} crashed the method instead of raising InvalidResponse"
            )
            assert info.value.code and info.value.message
        assert not [e for e in harness.events if e.type == "grant_issued"]
