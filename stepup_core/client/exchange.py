"""The method exchange: choose a credential, run its method's client half, answer, verify.

It knows no method by name: what a method is called, which package provides it and what to ask
for come from the server's :class:`~stepup_core.models.MethodInfo` and from the method's client
half. Methods whose interaction is ``code`` need no client half: the exchange asks the person
for the code itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
import pluggy

from ..clock import Clock
from ..errors import (
    ChallengeExpired,
    ChallengePending,
    ChallengeUsed,
    NoEligibleCredential,
    StepUpError,
    UnknownMethod,
    VerificationFailed,
)
from ..install import install_command
from ..models import (
    ChallengeState,
    ChallengeStatus,
    CheckResult,
    CredentialView,
    Factor,
    Interaction,
    IssuedToken,
    MethodInfo,
)
from .api import StepUpApi
from .jar import TokenJar
from .method import Answer, ClientContext, ClientMethod, Prompter
from .registry import client_methods, missing, package_for

_KIND = {Factor.MFA: "MFA", Factor.REAUTH: "re-authentication"}


@attrs.define
class PendingChallenge:
    """A challenge begun and not verified yet (a code was sent; ``verify_otp`` answers it)."""

    challenge_id: str
    credential_id: str | None
    requested_scopes: tuple[str, ...]


class MethodExchange:
    """Runs methods against one server for one client."""

    def __init__(
        self,
        api: StepUpApi,
        jar: TokenJar,
        clock: Clock,
        *,
        prompter: Callable[[], Prompter],
        actors: Mapping[str, Any],
        pm: pluggy.PluginManager | None = None,
        poll_interval: float = 0.25,
        max_poll_interval: float = 2.0,
    ) -> None:
        self.api = api
        self.jar = jar
        self.clock = clock
        self._prompter = prompter
        self.actors = actors
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        #: Challenges begun and not verified yet, by method.
        self.pending: dict[str, PendingChallenge] = {}
        self._pm = pm
        self._client_methods: dict[str, ClientMethod] | None = None
        self._methods: dict[str, MethodInfo] | None = None

    # --- what is installed -----------------------------------------------------------------

    def client_methods(self) -> dict[str, ClientMethod]:
        """The installed client halves by method name."""
        if self._client_methods is None:
            if self._pm is None:
                from ..plugins import get_plugin_manager

                self._pm = get_plugin_manager()
            self._client_methods = client_methods(self._pm)
        return self._client_methods

    async def methods(self, *, refresh: bool = False) -> dict[str, MethodInfo]:
        """The methods installed on the server, by name (asked once)."""
        if self._methods is None or refresh:
            self._methods = {info.name: info for info in await self.api.methods()}
        return self._methods

    async def method_info(self, method: str) -> MethodInfo:
        infos = await self.methods()
        if method not in infos:
            raise UnknownMethod(
                f"the server does not offer the {method!r} method; it offers: {', '.join(sorted(infos)) or 'none'}"
                f" (the server needs {package_for(method)})",
                method=method,
            )
        return infos[method]

    def runnable(self, info: MethodInfo) -> bool:
        """This client can run the method: its client half is installed, or it asks for a code."""
        return info.name in self.client_methods() or info.interaction is Interaction.CODE

    def label(self, credential: CredentialView, info: MethodInfo | None) -> str:
        """How a credential is offered to the person: the client half's ``label`` when it has
        one, else the server's label for the method."""
        half = self.client_methods().get(credential.method)
        custom = getattr(half, "label", None)
        name = custom(credential) if callable(custom) else None
        name = name or (info.label if info else None) or credential.method.capitalize()
        alias = f": {credential.alias}" if credential.alias else ""
        default = " (default)" if credential.is_default else ""
        return f"{name} [{credential.method}]{alias}{default}"

    async def what_to_enrol(self, factor: Factor, prefix: str) -> str:
        """Advice for a person with nothing to step up with."""
        try:
            infos = await self.methods()
        except StepUpError:  # advice only; the refusal is raised anyway
            infos = {}
        offered = [info for info in infos.values() if info.factor is factor and not info.fallback]
        candidates = sorted(info.name for info in offered if self.runnable(info))
        if candidates:
            return "enrol one of: " + ", ".join(candidates) + f" (POST {prefix}/enrollments)"
        packages = sorted({package_for(info.name, info.package) for info in offered})
        advice = (
            f"install {' or '.join(packages)} here (from a stepup checkout: {install_command(*packages)})"
            if packages
            else "the server offers none"
        )
        return f"the server offers no {_KIND[factor]} method this client can run ({advice})"

    # --- choosing ------------------------------------------------------------------------

    async def choose_and_run(
        self,
        check: CheckResult,
        factor: Factor,
        scopes: tuple[str, ...],
        *,
        only_method: str | None,
        preferred: str | None,
        options: Mapping[str, Any],
        prefix: str,
        timeout: float,
        transaction: Mapping[str, Any] | None = None,
    ) -> IssuedToken:
        """Offer the person the credentials of ``factor`` this client can use (skipping the
        choice when there is one, or when ``preferred`` is among them) and run the chosen one.
        With ``transaction`` the person is told the check's summary of it first."""
        infos = await self.methods()
        of_factor = [c for c in check.credentials if _offered(c, check, factor, only_method)]
        usable = [c for c in of_factor if c.method in infos and self.runnable(infos[c.method])]
        if not usable:
            raise await self._nothing_usable(check, factor, scopes, of_factor, only_method, prefix)
        usable.sort(key=lambda c: (c.id != check.default_credential_id, not c.is_default))
        chosen = next((c for c in usable if c.id == preferred), None)
        if chosen is None and len(usable) == 1:
            chosen = usable[0]
        if chosen is None:
            labels = [self.label(c, infos.get(c.method)) for c in usable]
            chosen = usable[await self._prompter().choose("How do you want to confirm it's you?", labels)]
        summary = check.transaction.summary if check.transaction is not None else None
        return await self.run(
            chosen.method,
            scopes,
            credential_id=chosen.id,
            options=options,
            timeout=timeout,
            transaction=transaction,
            summary=summary,
        )

    async def _nothing_usable(
        self,
        check: CheckResult,
        factor: Factor,
        scopes: Sequence[str],
        of_factor: Sequence[CredentialView],
        only_method: str | None,
        prefix: str,
    ) -> NoEligibleCredential:
        kind = _KIND[factor]
        infos = await self.methods()
        if of_factor:
            needs = sorted({package_for(c.method, _package(infos, c.method)) for c in of_factor})
            return NoEligibleCredential(
                f"no {kind} credential of this user can be used from this client: "
                f"install {' or '.join(needs)} here (from a stepup checkout: {install_command(*needs)}), "
                f"or {await self.what_to_enrol(factor, prefix)}",
                route=check.route.value,
                packages=needs,
            )
        what = f"{only_method!r} credential" if only_method else f"{kind} credential"
        return NoEligibleCredential(
            f"this user has no {what} that can step up for {', '.join(scopes)}: "
            + await self.what_to_enrol(factor, prefix),
            route=check.route.value,
        )

    # --- running one method ----------------------------------------------------------------

    def context(self, method: str, options: Mapping[str, Any]) -> ClientContext:
        return ClientContext(
            prompter=self._prompter(),
            options={k: v for k, v in options.items() if v is not None},
            actor=self.actors.get(method),
        )

    async def run(
        self,
        method: str,
        scopes: Sequence[str],
        *,
        credential_id: str | None = None,
        options: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float,
        transaction: Mapping[str, Any] | None = None,
        summary: str | None = None,
    ) -> IssuedToken:
        """Begin (when the method needs a challenge), answer through the client half (or ask
        for the code), and verify, or wait for a redirect method's callback.

        ``transaction``: bind the step-up to these details. The person is told what they
        approve (``summary``, else the server's summary from the challenge or a check) before
        the method asks anything of them."""
        info = await self.method_info(method)
        client_method = self.client_methods().get(method)
        if client_method is None and info.interaction is not Interaction.CODE:
            raise missing(method, info.package)
        ctx = self.context(method, options or {})
        if info.requires_challenge:
            challenge = await self.begin(
                method, scopes, credential_id=credential_id, params=params, transaction=transaction
            )
        else:
            challenge = {
                "challengeId": None,
                "method": method,
                "interaction": info.interaction.value,
                "credentialId": credential_id,
                "requestedScopes": list(scopes),
                "data": {},
            }
        if transaction is not None:
            await self._tell_transaction(challenge, scopes, transaction, summary, ctx)
        answer = await self._answer(info, client_method, challenge, ctx)
        if answer.completed_elsewhere:
            return await self.await_grant(challenge["challengeId"], timeout)
        if answer.response is None:
            raise VerificationFailed(f"the {method!r} client method gave no response to send")
        return await self.verify(
            method,
            answer.response,
            scopes,
            challenge_id=challenge.get("challengeId"),
            credential_id=credential_id if not info.requires_challenge else None,
            transaction=transaction if not info.requires_challenge else None,
        )

    async def _tell_transaction(
        self,
        challenge: Mapping[str, Any],
        scopes: Sequence[str],
        transaction: Mapping[str, Any],
        summary: str | None,
        ctx: ClientContext,
    ) -> None:
        """Tell the person what they approve, in the server's words (the challenge's summary, or
        a check's for a method that needs no challenge)."""
        if summary is None:
            bound = challenge.get("transaction")
            if isinstance(bound, Mapping) and isinstance(bound.get("summary"), str):
                summary = bound["summary"]
            else:
                check = await self.api.check(scopes[0], transaction=transaction)
                summary = check.transaction.summary if check.transaction is not None else None
        if summary:
            await ctx.prompter.tell(f"You are approving: {summary}")

    async def begin(self, method: str, scopes: Sequence[str], **request: Any) -> dict[str, Any]:
        """Start a challenge (``credential_id=``, ``params=`` as :meth:`StepUpApi.begin`) and
        remember it as pending for ``method``."""
        credential_id = request.get("credential_id")
        challenge = await self.api.begin(method, scopes, **request)
        data = challenge.get("data") or {}
        self.pending[method] = PendingChallenge(
            challenge["challengeId"],
            data.get("credentialId") or challenge.get("credentialId") or credential_id,
            tuple(scopes),
        )
        return challenge

    async def verify(self, method: str, response: Mapping[str, Any], scopes: Sequence[str], **ids: Any) -> IssuedToken:
        """Post an answer (``challenge_id=``, ``credential_id=``, ``transaction=`` as
        :meth:`StepUpApi.verify`); the token goes into the jar, and an answered challenge is no
        longer pending."""
        token = await self.api.verify(method, response, scopes, **ids)
        self.jar.put(token)
        pending = self.pending.get(method)
        if pending is not None and pending.challenge_id == ids.get("challenge_id"):
            del self.pending[method]
        return token

    async def _answer(
        self, info: MethodInfo, client_method: ClientMethod | None, challenge: Mapping[str, Any], ctx: ClientContext
    ) -> Answer:
        if client_method is not None:
            return await client_method.answer(challenge, ctx)
        code = ctx.options.get("code")
        if code is None:
            destination = (challenge.get("data") or {}).get("destination")
            label = f"Code sent to {destination}" if destination else info.prompt or f"Code for {info.name}"
            code = await ctx.prompter.ask_code(label)
        return Answer(response={"code": str(code).strip()})

    # --- completed elsewhere -------------------------------------------------------------

    async def poll(self, challenge_id: str, timeout: float, settled: Callable[[ChallengeState], Awaitable[Any]]) -> Any:
        """Poll a challenge or enrolment completed elsewhere (a browser callback) until
        ``settled`` answers something other than None, it fails, it expires, or ``timeout``
        seconds pass (:class:`ChallengePending`). The interval grows to ``max_poll_interval``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        interval = self.poll_interval
        while True:
            state = await self.api.challenge_state(challenge_id)
            result = await settled(state)
            if result is not None:
                return result
            if state.status is ChallengeStatus.FAILED:
                raise VerificationFailed(
                    f"the {state.method} sign-in failed: {state.failure or 'no reason given'}", method=state.method
                )
            if state.expires_at <= self.clock.now():
                raise ChallengeExpired(f"the {state.method} challenge expired before it was completed")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ChallengePending(
                    f"the {state.method} sign-in was not completed within {timeout:g} s; "
                    "finish it in the browser and call again, or start over",
                    challengeId=challenge_id,
                )
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 1.5, self.max_poll_interval)

    async def await_grant(self, challenge_id: str, timeout: float) -> IssuedToken:
        """The grant of a challenge completed by callback, once (into the jar)."""

        async def settled(state: ChallengeState) -> IssuedToken | None:
            if state.grant is not None:
                self.jar.put(state.grant)
                return state.grant
            if state.status is ChallengeStatus.CONSUMED:
                raise ChallengeUsed("the challenge was completed, but its token was already picked up")
            return None

        token: IssuedToken = await self.poll(challenge_id, timeout, settled)
        return token

    async def await_enrollment(self, enrollment_id: str, timeout: float) -> CredentialView:
        """The credential an enrolment completed by callback linked."""

        async def settled(state: ChallengeState) -> CredentialView | None:
            if state.credential_id is None:
                return None
            return next((c for c in await self.api.credentials() if c.id == state.credential_id), None)

        credential: CredentialView = await self.poll(enrollment_id, timeout, settled)
        return credential


def _offered(credential: CredentialView, check: CheckResult, factor: Factor, only_method: str | None) -> bool:
    """The check offers ``credential`` for ``factor`` (and for ``only_method`` when given)."""
    return (
        credential.factor is factor
        and (not check.methods or credential.method in check.methods)
        and (only_method is None or credential.method == only_method)
    )


def _package(infos: Mapping[str, MethodInfo], method: str) -> str | None:
    info = infos.get(method)
    return info.package if info else None
