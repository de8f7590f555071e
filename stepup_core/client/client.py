"""``StepUpClient``: the Python face of the step-up hook, over HTTP with aiohttp.

The surface mirrors the ``useStepUpAuthentication`` hook in snake_case. A few facts shape it:

- a failed check means "step-up required" (the error is kept in :attr:`StepUpClient.state`);
- ``verify_otp``, ``verify_wallet`` and ``verify_social`` record a failure in ``state.error`` and
  return None; ``verify_passkey_mfa``, ``verify_totp_mfa`` and ``verify_recovery_code`` record it
  and raise;
- ``verify_otp`` before ``send_otp`` is an error;
- every successful verification puts its token in the :class:`~stepup_core.client.jar.TokenJar`,
  and requests made through :meth:`StepUpClient.request` carry the right one;
- every check, prompt and verify call takes ``transaction`` (a JSON object of the action's
  details): the step-up is bound to them, the person is told the server's summary first, and
  the token is attached only to a request for the same details (``docs/transaction-binding.md``).

The client is a facade over three parts: :class:`~stepup_core.client.api.StepUpApi` (one typed
call per route), :class:`~stepup_core.client.exchange.MethodExchange` (choose, run, answer,
poll) and :class:`~stepup_core.client.app.AppRoutes` (the application's routes and the retry
after a step-up refusal).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import attrs
import pluggy

from ..clock import Clock, SystemClock
from ..errors import (
    InvalidScope,
    MethodNotAllowed,
    NoEligibleCredential,
    StepUpError,
)
from ..models import (
    CheckResult,
    CredentialView,
    EnrollmentStart,
    Factor,
    Interaction,
    IssuedToken,
    MethodInfo,
    Route,
)
from ..transaction import transaction_hash
from .api import ELEVATED_TOKEN_HEADER, StepUpApi, lenient
from .app import STEP_UP_ERROR, AppRequest, AppResponse, AppRoutes, parse_www_authenticate
from .exchange import MethodExchange
from .jar import TokenJar
from .method import ClientMethod, Prompter
from .prompters import TerminalPrompter
from .registry import missing
from .verifiers import HookVerifiers, OtpSent

#: A transaction's details, as the application names them (``{"amount": "120.00", ...}``).
Details = Mapping[str, Any]


def _hash(transaction: Details | None) -> str | None:
    return transaction_hash(transaction) if transaction is not None else None


__all__ = [
    "ELEVATED_TOKEN_HEADER",
    "STEP_UP_ERROR",
    "AppResponse",
    "OtpSent",
    "StepUpClient",
    "StepUpState",
    "parse_www_authenticate",
]

T = TypeVar("T")


@attrs.define
class StepUpState:
    """``is_loading`` while a call to the server is in flight; ``error`` holds the last failure."""

    is_loading: bool = False
    error: StepUpError | None = None


class StepUpClient(HookVerifiers):
    """A client of a stepup server, signed in as one session.

    :param base_url: the application's base URL (``http://127.0.0.1:8080``).
    :param session_token: sent as ``Authorization: Bearer <token>`` on every request, so the
        application's ``identify`` can tell who is calling. None: the caller authenticates some
        other way (pass ``headers`` or ``http``).
    :param prefix: where the stepup routes are mounted.
    :param prompter: talks to the person; :class:`TerminalPrompter` by default.
    :param pm: the plugin manager that provides client methods (entry points by default).
    :param auto_step_up: on a 401 ``insufficient_user_authentication`` from :meth:`request`,
        prompt and retry once.
    :param clock: decides token expiry in the jar.
    :param credential_id: a default credential for the verify calls whose method it belongs to.
    :param actors: stand-ins for the person by method name (``ClientContext.actor``).
    :param http: an aiohttp session to use (not closed by the client).
    :param headers: extra headers for every request.
    :param social_timeout: seconds ``verify_social`` waits for the browser leg by default.
    :param poll_interval: first pause between polls of a challenge completed elsewhere.
    :param max_poll_interval: the longest pause between polls (the pause grows by half each time).
    """

    def __init__(
        self,
        base_url: str,
        session_token: str | None = None,
        *,
        prefix: str = "/stepup",
        prompter: Prompter | None = None,
        pm: pluggy.PluginManager | None = None,
        auto_step_up: bool = False,
        clock: Clock | None = None,
        credential_id: str | None = None,
        actors: Mapping[str, Any] | None = None,
        http: aiohttp.ClientSession | None = None,
        headers: Mapping[str, str] | None = None,
        social_timeout: float = 300.0,
        poll_interval: float = 0.25,
        max_poll_interval: float = 2.0,
    ) -> None:
        self.prompter: Prompter = prompter or TerminalPrompter()
        self.auto_step_up = auto_step_up
        self.clock = clock or SystemClock()
        self.credential_id = credential_id
        self.actors: dict[str, Any] = dict(actors or {})
        self.jar = TokenJar(self.clock)
        self.state = StepUpState()
        self.last_check: CheckResult | None = None
        self.social_timeout = social_timeout
        self._loading = 0
        self._last_scopes: tuple[str, ...] = ()
        self.api = StepUpApi(
            base_url, prefix=prefix, session_token=session_token, http=http, headers=headers, busy=self._loading_while
        )
        self.exchange = MethodExchange(
            self.api,
            self.jar,
            self.clock,
            prompter=lambda: self.prompter,
            actors=self.actors,
            pm=pm,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
        )
        self.app = AppRoutes(self.api, self.jar, self._loading_while)

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.api.base_url

    @property
    def prefix(self) -> str:
        return self.api.prefix

    @property
    def session_token(self) -> str | None:
        return self.api.session_token

    @session_token.setter
    def session_token(self, value: str | None) -> None:
        self.api.session_token = value

    @property
    def poll_interval(self) -> float:
        return self.exchange.poll_interval

    @property
    def max_poll_interval(self) -> float:
        return self.exchange.max_poll_interval

    async def __aenter__(self) -> StepUpClient:
        self.api.session()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.api.close()

    # --- plumbing ---------------------------------------------------------------------------

    def client_methods(self) -> dict[str, ClientMethod]:
        """The installed client halves by method name."""
        return self.exchange.client_methods()

    async def _loading_while(self, work: Awaitable[T]) -> T:
        self._loading += 1
        self.state.is_loading = True
        try:
            return await work
        finally:
            self._loading -= 1
            self.state.is_loading = self._loading > 0

    def _record(self, error: StepUpError) -> StepUpError:
        self.state.error = error
        return error

    async def _guarded(self, work: Awaitable[T]) -> T:
        """Run ``work``; a failure is recorded in ``state.error`` and raised."""
        try:
            return await work
        except StepUpError as exc:
            raise self._record(exc) from None

    def _scopes(self, scope: str | None, requested_scopes: Iterable[str] | None) -> tuple[str, ...]:
        if requested_scopes is not None:
            scopes = tuple(requested_scopes)
        elif scope is not None:
            scopes = (scope,)
        else:
            scopes = self._last_scopes
        if not scopes:
            raise InvalidScope(
                "no scope to step up for: pass scope or requested_scopes, or run check_step_up_auth first",
                "requestedScopes",
            )
        return scopes

    def reset_state(self) -> None:
        """Clear ``is_loading``, ``error`` and a pending one-time code."""
        self.state = StepUpState(is_loading=self._loading > 0)
        self.exchange.pending.clear()

    # --- methods the server offers ------------------------------------------------------------

    async def methods(self, *, refresh: bool = False) -> dict[str, MethodInfo]:
        """The methods installed on the server (``GET /methods``), by name."""
        return await self.exchange.methods(refresh=refresh)

    # --- the check ----------------------------------------------------------------------------

    def is_step_up_required(self, scope: str, *, transaction: Details | None = None) -> bool:
        """True unless the jar holds a valid, unexpired token for ``scope`` (bound to
        ``transaction`` when given, else unbound)."""
        return not self.jar.has_valid(scope, _hash(transaction))

    async def _check(self, scope: str, transaction: Details | None = None) -> CheckResult:
        held = self.jar.peek(scope, _hash(transaction))  # only looked at: a single-use token stays valid
        result = await self.api.check(scope, held.elevated_access_token if held else None, transaction=transaction)
        self.last_check = result
        return result

    async def check_step_up_auth(self, scope: str, *, transaction: Details | None = None) -> CheckResult:
        """Ask the server whether ``scope`` needs step-up (for the action with ``transaction``
        details, when given: the answer's ``transaction.summary`` says it in words). A failed
        check counts as required: the answer then has ``is_required`` True and the error is in
        ``state.error``."""
        self._last_scopes = (scope,)
        try:
            return await self._check(scope, transaction)
        except StepUpError as exc:
            self._record(exc)
            self.last_check = None
            return CheckResult(scope=scope, is_required=True, route=Route.REAUTH, reasons=("check_failed",))

    async def _strict_check(self, scopes: tuple[str, ...], transaction: Details | None = None) -> CheckResult:
        self._last_scopes = (scopes[0],)
        check = await self._guarded(self._check(scopes[0], transaction))
        self._last_scopes = scopes
        return check

    # --- prompts ------------------------------------------------------------------------------

    async def prompt_step_up_auth(
        self,
        scope: str | None = None,
        *,
        requested_scopes: Iterable[str] | None = None,
        method: str | None = None,
        transaction: Details | None = None,
        **options: Any,
    ) -> IssuedToken | None:
        """Step up for ``scope`` (or ``requested_scopes``), asking the person through the prompter.

        Routes to MFA when the user has MFA devices, else to re-authentication; offers the
        user's credentials whose method this client can run (code methods need no plugin);
        skips the choice when there is one. ``method`` restricts the offer to one method;
        ``options`` reach the client method (``code=``, ``signer=``...). ``transaction`` binds
        the step-up to the action's details; the prompter is told the server's summary first.

        Returns the token (also kept in the jar), or None when the server says no step-up is
        needed for the scope and no token is held.
        """
        scopes = self._scopes(scope, requested_scopes)
        check = await self._strict_check(scopes, transaction)
        if not check.is_required:
            held = [self.jar.peek(s, _hash(transaction)) for s in scopes]
            if all(held) and len({t.elevated_access_token for t in held if t}) == 1:
                return held[0]
            if not any(held):
                return None
        return await self._choose_and_run(check, _factor_of(check.route), scopes, method, options, transaction)

    async def prompt_mfa(
        self,
        scope: str | None = None,
        *,
        requested_scopes: Iterable[str] | None = None,
        method: str | None = None,
        transaction: Details | None = None,
        **options: Any,
    ) -> IssuedToken:
        """Step up with an MFA device (passkey, authenticator app, recovery code). Needs one.
        ``transaction`` as for :meth:`prompt_step_up_auth`."""
        scopes = self._scopes(scope, requested_scopes)
        check = await self._strict_check(scopes, transaction)
        if not any(c.factor is Factor.MFA for c in check.credentials):
            raise self._record(
                NoEligibleCredential(
                    "this user has no MFA device registered, so there is nothing to prompt for: "
                    + await self.exchange.what_to_enrol(Factor.MFA, self.prefix),
                    route="mfa",
                )
            )
        return await self._choose_and_run(check, Factor.MFA, scopes, method, options, transaction)

    async def prompt_reauthenticate(
        self,
        scope: str | None = None,
        *,
        requested_scopes: Iterable[str] | None = None,
        method: str | None = None,
        transaction: Details | None = None,
        **options: Any,
    ) -> IssuedToken:
        """Step up by signing in again (email or SMS code, wallet, social). Refused when the user
        has MFA devices: use :meth:`prompt_mfa`. ``transaction`` as for
        :meth:`prompt_step_up_auth`."""
        scopes = self._scopes(scope, requested_scopes)
        check = await self._strict_check(scopes, transaction)
        if check.route is Route.MFA:
            raise self._record(
                MethodNotAllowed(
                    "re-authentication is refused because this user has MFA devices; step up with prompt_mfa",
                    route="mfa",
                )
            )
        return await self._choose_and_run(check, Factor.REAUTH, scopes, method, options, transaction)

    async def _choose_and_run(
        self,
        check: CheckResult,
        factor: Factor,
        scopes: tuple[str, ...],
        only_method: str | None,
        options: Mapping[str, Any],
        transaction: Details | None = None,
    ) -> IssuedToken:
        return await self._guarded(
            self.exchange.choose_and_run(
                check,
                factor,
                scopes,
                only_method=only_method,
                preferred=self.credential_id,
                options=options,
                prefix=self.prefix,
                timeout=self.social_timeout,
                transaction=transaction,
            )
        )

    # --- the generic exchange -----------------------------------------------------------------

    async def step_up(
        self,
        method: str,
        *,
        requested_scopes: Iterable[str] | None = None,
        credential_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        transaction: Details | None = None,
        **options: Any,
    ) -> IssuedToken:
        """Step up with one named method through its client half (no choice offered), bound to
        ``transaction`` when given.

        Records a failure in ``state.error`` and raises it.
        """
        return await self._guarded(
            self._run(
                method,
                requested_scopes,
                credential_id=credential_id,
                options=options,
                params=params,
                timeout=timeout,
                transaction=transaction,
            )
        )

    async def _run(
        self,
        method: str,
        requested_scopes: Iterable[str] | None,
        *,
        credential_id: str | None = None,
        options: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        transaction: Details | None = None,
    ) -> IssuedToken:
        scopes = self._scopes(None, requested_scopes)
        return await self.exchange.run(
            method,
            scopes,
            credential_id=credential_id,
            options=options,
            params=params,
            timeout=self.social_timeout if timeout is None else timeout,
            transaction=transaction,
        )

    # --- credentials and enrolment ------------------------------------------------------------

    def _held(self, scope: str) -> str | None:
        token = self.jar.take(scope)
        return token.elevated_access_token if token else None

    async def list_credentials(self) -> list[CredentialView]:
        return await self.api.credentials()

    async def begin_enrollment(
        self, method: str, params: Mapping[str, Any] | None = None, *, alias: str | None = None
    ) -> EnrollmentStart:
        """``POST /enrollments``; carries a ``credential:link`` token when the jar holds one."""
        return await self.api.begin_enrollment(
            method, params or {}, alias=alias, link_token=self._held("credential:link")
        )

    async def complete_enrollment(self, enrollment_id: str, response: Mapping[str, Any]) -> CredentialView:
        """``POST /enrollments/{id}``; carries a ``credential:link`` token when the jar holds one
        (the server asks for it when another credential was linked while this one was pending)."""
        return await self.api.complete_enrollment(enrollment_id, response, link_token=self._held("credential:link"))

    async def enroll(self, method: str, *, alias: str | None = None, **options: Any) -> CredentialView:
        """Enrol a credential through the method's client half (parameters, then the answer).

        A user who already has a credential needs a ``credential:link`` token first
        (``prompt_step_up_auth("credential:link")``)."""
        client_method = self.client_methods().get(method)
        if client_method is None:
            info = (await self.methods()).get(method)
            raise missing(method, info.package if info else None)
        ctx = self.exchange.context(method, options)
        params = await client_method.enrollment_params(ctx)
        start = await self.begin_enrollment(method, params, alias=alias)
        response = await client_method.answer_enrollment(_wire_enrollment(start), ctx)
        if start.credential is not None:
            # Completed at once (recovery codes): the method kept or showed what it was given.
            return start.credential
        if (await self.exchange.method_info(method)).interaction is Interaction.REDIRECT:
            # Completed by the provider's redirect to the server: wait for the link to appear.
            timeout = options.get("timeout")
            return await self.exchange.await_enrollment(
                start.enrollment_id, self.social_timeout if timeout is None else float(timeout)
            )
        return await self.complete_enrollment(start.enrollment_id, response)

    async def delete_credential(self, credential_id: str) -> list[CredentialView]:
        """Remove a credential; needs a ``credential:unlink`` token in the jar. Returns the
        credentials that went with it (the recovery codes, when this was the last passkey or
        authenticator app), usually none."""
        return await self.api.delete_credential(credential_id, unlink_token=self._held("credential:unlink"))

    async def revoke_grants(self) -> int:
        """Revoke every elevated token of this session, on the server and in the jar."""
        revoked = await self.api.revoke_grants()
        self.jar.clear()
        return revoked

    # --- the application's own routes ---------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        scope: str | None = None,
        headers: Mapping[str, str] | None = None,
        transaction: Details | None = None,
        **kwargs: Any,
    ) -> AppResponse:
        """Call the application. ``scope`` declares the step-up scope the route needs: the jar's
        token for it goes in ``X-Elevated-Access-Token`` (a single-use token leaves the jar).
        ``transaction``: the details of the action, when the route binds its token to them; the
        token bound to them is attached (an unbound one otherwise).

        With ``auto_step_up``, a 401 ``insufficient_user_authentication`` runs the prompt with the
        check result from the answer (bound to the transaction the route named in it, whose
        summary the person is told) and retries once. Other answers are returned as they are
        (see :meth:`AppResponse.raise_for_problem`); a ``403 transaction_mismatch`` is never
        retried."""
        on_refusal = self._prompt_from_refusal if self.auto_step_up else None
        request = AppRequest(method, url, scope, headers, kwargs, _hash(transaction))
        return await self.app.request(request, on_refusal)

    async def get(self, url: str, *, scope: str | None = None, **kwargs: Any) -> AppResponse:
        return await self.request("GET", url, scope=scope, **kwargs)

    async def post(self, url: str, *, scope: str | None = None, **kwargs: Any) -> AppResponse:
        return await self.request("POST", url, scope=scope, **kwargs)

    async def put(self, url: str, *, scope: str | None = None, **kwargs: Any) -> AppResponse:
        return await self.request("PUT", url, scope=scope, **kwargs)

    async def delete(self, url: str, *, scope: str | None = None, **kwargs: Any) -> AppResponse:
        return await self.request("DELETE", url, scope=scope, **kwargs)

    async def _prompt_from_refusal(self, response: AppResponse, scope: str) -> IssuedToken | None:
        """Step up with the check the refusal carries (no second check; bound to the details
        it names), else prompt afresh."""
        check_data = getattr(response.problem(), "check", None)
        check: CheckResult | None = None
        if isinstance(check_data, dict):
            try:
                check = lenient(check_data, CheckResult)
            except StepUpError:
                check = None
        if check is None:
            return await self.prompt_step_up_auth(scope)
        self.last_check = check
        self._last_scopes = (scope,)
        details = check.transaction.details if check.transaction is not None else None
        return await self._choose_and_run(check, _factor_of(check.route), (scope,), None, {}, details)


def _factor_of(route: Route) -> Factor:
    return Factor.MFA if route is Route.MFA else Factor.REAUTH


def _wire_enrollment(start: EnrollmentStart) -> dict[str, Any]:
    from ..serialization import unstructure

    wire: dict[str, Any] = unstructure(start)
    return wire
