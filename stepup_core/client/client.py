"""``StepUpClient``: the Python face of the step-up hook, over HTTP with aiohttp.

The surface mirrors the ``useStepUpAuthentication`` hook in snake_case. A few facts shape it:

- a failed check means "step-up required" (the error is kept in :attr:`StepUpClient.state`);
- ``verify_otp``, ``verify_wallet`` and ``verify_social`` record a failure in ``state.error`` and
  return None; ``verify_passkey_mfa``, ``verify_totp_mfa`` and ``verify_recovery_code`` record it
  and raise;
- ``verify_otp`` before ``send_otp`` is an error;
- every successful verification puts its token in the :class:`~stepup_core.client.jar.TokenJar`,
  and requests made through :meth:`StepUpClient.request` carry the right one.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import attrs
import pluggy
from multidict import CIMultiDictProxy

from ..clock import Clock, SystemClock
from ..errors import (
    ChallengeExpired,
    ChallengeNotFound,
    ChallengePending,
    ChallengeUsed,
    ClientMethodMissing,
    InvalidScope,
    MethodNotAllowed,
    NoEligibleCredential,
    ServerError,
    StepUpError,
    VerificationFailed,
)
from ..install import install_command
from ..models import (
    ChallengeState,
    ChallengeStatus,
    CheckResult,
    CredentialFormat,
    CredentialView,
    EnrollmentStart,
    Factor,
    Interaction,
    IssuedToken,
    MethodInfo,
    Route,
)
from ..serialization import structure
from .jar import TokenJar
from .method import Answer, ClientContext, ClientMethod, Prompter
from .problems import error_from_problem
from .prompters import TerminalPrompter
from .registry import client_methods, missing, package_for

T = TypeVar("T")

#: Header that carries the elevated access token to a protected route.
ELEVATED_TOKEN_HEADER = "X-Elevated-Access-Token"
STEP_UP_ERROR = "insufficient_user_authentication"

_AUTH_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')

_METHOD_LABELS: Mapping[str, str] = {
    "totp": "Authenticator app",
    "passkey": "Passkey",
    "recovery": "Recovery code",
    "wallet": "Wallet signature",
    "social": "Social sign-in",
}
_CODE_LABELS: Mapping[str, str] = {
    "totp": "Code from your authenticator app",
    "recovery": "Recovery code",
}


def parse_www_authenticate(value: str) -> dict[str, str]:
    """The parameters of a ``Bearer`` challenge (``error``, ``scope``...), or {} for another scheme."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return {}
    return {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)) for m in _AUTH_PARAM.finditer(rest)
    }


def _known_fields(cls: type[Any], data: Any) -> Any:
    """Drop members a newer server may add, so the client keeps working against it."""
    if not isinstance(data, dict):
        return data
    from ..serialization import camel

    names = {camel(a.name) for a in attrs.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _lenient(data: Any, cls: type[T]) -> T:
    """Structure a server answer, ignoring members this client does not know."""
    cleaned = _known_fields(cls, data)
    if cls is CheckResult and isinstance(cleaned, dict) and isinstance(cleaned.get("credentials"), list):
        cleaned["credentials"] = [_known_fields(CredentialView, c) for c in cleaned["credentials"]]
    if cls is ChallengeState and isinstance(cleaned, dict) and isinstance(cleaned.get("grant"), dict):
        cleaned["grant"] = _known_fields(IssuedToken, cleaned["grant"])
    if cls is EnrollmentStart and isinstance(cleaned, dict) and isinstance(cleaned.get("credential"), dict):
        cleaned["credential"] = _known_fields(CredentialView, cleaned["credential"])
    return structure(cleaned, cls)


@attrs.define
class StepUpState:
    """``is_loading`` while a call to the server is in flight; ``error`` holds the last failure."""

    is_loading: bool = False
    error: StepUpError | None = None


@attrs.frozen
class OtpSent:
    """What :meth:`StepUpClient.send_otp` answers."""

    verification_type: str
    credential_id: str
    destination: str | None = None


@attrs.frozen
class AppResponse:
    """An answer from the application, read in full."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    #: The elevated token attached to the request, if any.
    token_sent: str | None = None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def ok(self) -> bool:
        return self.status < 400

    def problem(self) -> StepUpError | None:
        """The stepup error this answer carries, or None for a success."""
        if self.ok:
            return None
        try:
            body: Any = self.json()
        except ValueError:
            body = None
        return error_from_problem(self.status, body)

    def raise_for_problem(self) -> None:
        error = self.problem()
        if error is not None:
            raise error

    def step_up_challenge(self) -> dict[str, str] | None:
        """The RFC 9470 challenge parameters when the answer asks for step-up, else None."""
        if self.status != 401:
            return None
        params = parse_www_authenticate(self.headers.get("WWW-Authenticate", ""))
        return params if params.get("error") == STEP_UP_ERROR else None


@attrs.define
class _PendingOtp:
    challenge_id: str
    credential_id: str | None
    requested_scopes: tuple[str, ...]


class StepUpClient:
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
        self.base_url = base_url.rstrip("/")
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.session_token = session_token
        self.prompter: Prompter = prompter or TerminalPrompter()
        self.auto_step_up = auto_step_up
        self.clock = clock or SystemClock()
        self.credential_id = credential_id
        self.actors: dict[str, Any] = dict(actors or {})
        self.jar = TokenJar(self.clock)
        self.state = StepUpState()
        self.last_check: CheckResult | None = None
        self.social_timeout = social_timeout
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self._pm = pm
        self._client_methods: dict[str, ClientMethod] | None = None
        self._methods: dict[str, MethodInfo] | None = None
        self._http = http
        self._owns_http = http is None
        self._headers = dict(headers or {})
        self._loading = 0
        self._last_scopes: tuple[str, ...] = ()
        self._otp: _PendingOtp | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> StepUpClient:
        self._session()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None and self._owns_http:
            await self._http.close()
        self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
            self._owns_http = True
        return self._http

    # --- plumbing ---------------------------------------------------------------------------

    def client_methods(self) -> dict[str, ClientMethod]:
        """The installed client halves by method name."""
        if self._client_methods is None:
            if self._pm is None:
                from ..plugins import get_plugin_manager

                self._pm = get_plugin_manager()
            self._client_methods = client_methods(self._pm)
        return self._client_methods

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def _base_headers(self) -> dict[str, str]:
        headers = dict(self._headers)
        if self.session_token is not None:
            headers["Authorization"] = f"Bearer {self.session_token}"
        return headers

    async def _loading_while(self, work: Awaitable[T]) -> T:
        self._loading += 1
        self.state.is_loading = True
        try:
            return await work
        finally:
            self._loading -= 1
            self.state.is_loading = self._loading > 0

    async def _api(self, verb: str, path: str, body: Any = None, *, headers: Mapping[str, str] | None = None) -> Any:
        """Call a stepup route; a problem answer is raised as its stepup error."""
        return await self._loading_while(self._api_call(verb, path, body, headers))

    async def _api_call(self, verb: str, path: str, body: Any, extra: Mapping[str, str] | None) -> Any:
        url = self._url(self.prefix + path)
        headers = self._base_headers()
        headers["Accept"] = "application/json"
        headers.update(extra or {})
        try:
            async with self._session().request(verb, url, json=body, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ServerError(f"could not reach the step-up server at {url}: {exc or type(exc).__name__}") from exc
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if status >= 400:
            raise error_from_problem(status, data)
        if raw and data is None:
            raise ServerError(f"the step-up server answered {verb} {path} with a body that is not JSON")
        return data

    def _record(self, error: StepUpError) -> StepUpError:
        self.state.error = error
        return error

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
        self._otp = None

    # --- methods the server offers ------------------------------------------------------------

    async def methods(self, *, refresh: bool = False) -> dict[str, MethodInfo]:
        """The methods installed on the server (``GET /methods``), by name."""
        if self._methods is None or refresh:
            data = await self._api("GET", "/methods")
            items = data.get("methods", data) if isinstance(data, dict) else data
            if not isinstance(items, list):
                raise ServerError("the step-up server's method list is not a list")
            infos = [_lenient(item, MethodInfo) for item in items]
            self._methods = {info.name: info for info in infos}
        return self._methods

    async def _method_info(self, method: str) -> MethodInfo:
        infos = await self.methods()
        if method not in infos:
            from ..errors import UnknownMethod

            raise UnknownMethod(
                f"the server does not offer the {method!r} method; it offers: {', '.join(sorted(infos)) or 'none'}"
                f" (the server needs {package_for(method)})",
                method=method,
            )
        return infos[method]

    # --- the check ----------------------------------------------------------------------------

    def is_step_up_required(self, scope: str) -> bool:
        """True unless the jar holds a valid, unexpired token for ``scope``."""
        return not self.jar.has_valid(scope)

    async def _check(self, scope: str) -> CheckResult:
        headers = {}
        held = self.jar.peek(scope)  # the check only looks at it: a single-use token stays valid
        if held is not None:
            headers[ELEVATED_TOKEN_HEADER] = held.elevated_access_token
        data = await self._api("POST", "/check", {"scope": scope}, headers=headers)
        result = _lenient(data, CheckResult)
        self.last_check = result
        return result

    async def check_step_up_auth(self, scope: str) -> CheckResult:
        """Ask the server whether ``scope`` needs step-up. A failed check counts as required:
        the answer then has ``is_required`` True and the error is in ``state.error``."""
        self._last_scopes = (scope,)
        try:
            return await self._check(scope)
        except StepUpError as exc:
            self._record(exc)
            self.last_check = None
            return CheckResult(scope=scope, is_required=True, route=Route.REAUTH, reasons=("check_failed",))

    async def _strict_check(self, scope: str) -> CheckResult:
        self._last_scopes = (scope,)
        try:
            return await self._check(scope)
        except StepUpError as exc:
            raise self._record(exc) from None

    # --- prompts ------------------------------------------------------------------------------

    async def prompt_step_up_auth(
        self,
        scope: str | None = None,
        *,
        requested_scopes: Iterable[str] | None = None,
        method: str | None = None,
        **options: Any,
    ) -> IssuedToken | None:
        """Step up for ``scope`` (or ``requested_scopes``), asking the person through the prompter.

        Routes to MFA when the user has MFA devices, else to re-authentication; offers the
        user's credentials whose method this client can run (code methods need no plugin);
        skips the choice when there is one. ``method`` restricts the offer to one method;
        ``options`` reach the client method (``code=``, ``signer=``...).

        Returns the token (also kept in the jar), or None when the server says no step-up is
        needed for the scope and no token is held.
        """
        scopes = self._scopes(scope, requested_scopes)
        check = await self._strict_check(scopes[0])
        self._last_scopes = scopes
        if not check.is_required:
            held = [self.jar.peek(s) for s in scopes]
            if all(held) and len({t.elevated_access_token for t in held if t}) == 1:
                return held[0]
            if not any(held):
                return None
        factor = Factor.MFA if check.route is Route.MFA else Factor.REAUTH
        return await self._guarded(self._choose_and_run(check, factor, scopes, method, options))

    async def prompt_mfa(
        self,
        scope: str | None = None,
        *,
        requested_scopes: Iterable[str] | None = None,
        method: str | None = None,
        **options: Any,
    ) -> IssuedToken:
        """Step up with an MFA device (passkey, authenticator app, recovery code). Needs one."""
        scopes = self._scopes(scope, requested_scopes)
        check = await self._strict_check(scopes[0])
        self._last_scopes = scopes
        if not any(c.factor is Factor.MFA for c in check.credentials):
            raise self._record(
                NoEligibleCredential(
                    "this user has no MFA device registered, so there is nothing to prompt for: "
                    + await self._what_to_enrol(Factor.MFA),
                    route="mfa",
                )
            )
        return await self._guarded(self._choose_and_run(check, Factor.MFA, scopes, method, options))

    async def prompt_reauthenticate(
        self,
        scope: str | None = None,
        *,
        requested_scopes: Iterable[str] | None = None,
        method: str | None = None,
        **options: Any,
    ) -> IssuedToken:
        """Step up by signing in again (email or SMS code, wallet, social). Refused when the user
        has MFA devices: use :meth:`prompt_mfa`."""
        scopes = self._scopes(scope, requested_scopes)
        check = await self._strict_check(scopes[0])
        self._last_scopes = scopes
        if check.route is Route.MFA:
            raise self._record(
                MethodNotAllowed(
                    "re-authentication is refused because this user has MFA devices; step up with prompt_mfa",
                    route="mfa",
                )
            )
        return await self._guarded(self._choose_and_run(check, Factor.REAUTH, scopes, method, options))

    async def _guarded(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except StepUpError as exc:
            raise self._record(exc) from None

    async def _what_to_enrol(self, factor: Factor) -> str:
        try:
            infos = await self.methods()
        except StepUpError:
            infos = {}
        installed = self.client_methods()
        candidates = sorted(
            name
            for name, info in infos.items()
            if info.factor is factor
            and not info.fallback
            and (name in installed or info.interaction is Interaction.CODE)
        )
        if candidates:
            return "enrol one of: " + ", ".join(candidates) + f" (POST {self.prefix}/enrollments)"
        kind = "MFA" if factor is Factor.MFA else "re-authentication"
        return f"the server offers no {kind} method this client can run; install one (for example " + (
            "stepup-passkey or stepup-totp)" if factor is Factor.MFA else "stepup-otp or stepup-wallet)"
        )

    def _label(self, credential: CredentialView) -> str:
        if credential.method == "otp":
            name = "SMS code" if credential.format is CredentialFormat.PHONE_NUMBER else "Email code"
        else:
            name = _METHOD_LABELS.get(credential.method, credential.method.capitalize())
        alias = f": {credential.alias}" if credential.alias else ""
        default = " (default)" if credential.is_default else ""
        return f"{name} [{credential.method}]{alias}{default}"

    async def _choose_and_run(
        self,
        check: CheckResult,
        factor: Factor,
        scopes: tuple[str, ...],
        only_method: str | None,
        options: Mapping[str, Any],
    ) -> IssuedToken:
        infos = await self.methods()
        installed = self.client_methods()
        of_factor = [
            c
            for c in check.credentials
            if c.factor is factor
            and (not check.methods or c.method in check.methods)
            and (only_method is None or c.method == only_method)
        ]
        usable = [
            c
            for c in of_factor
            if c.method in infos and (c.method in installed or infos[c.method].interaction is Interaction.CODE)
        ]
        if not usable:
            kind = "MFA" if factor is Factor.MFA else "re-authentication"
            if of_factor:
                needs = sorted({package_for(c.method) for c in of_factor})
                raise NoEligibleCredential(
                    f"no {kind} credential of this user can be used from this client: "
                    f"install {' or '.join(needs)} here (from a stepup checkout: {install_command(*needs)}), "
                    f"or {await self._what_to_enrol(factor)}",
                    route=check.route.value,
                    packages=needs,
                )
            what = f"{only_method!r} credential" if only_method else f"{kind} credential"
            raise NoEligibleCredential(
                f"this user has no {what} that can step up for {', '.join(scopes)}: "
                + await self._what_to_enrol(factor),
                route=check.route.value,
            )
        usable.sort(key=lambda c: (c.id != check.default_credential_id, not c.is_default))
        chosen = next((c for c in usable if c.id == self.credential_id), None)
        if chosen is None:
            if len(usable) == 1:
                chosen = usable[0]
            else:
                index = await self.prompter.choose(
                    "How do you want to confirm it's you?", [self._label(c) for c in usable]
                )
                chosen = usable[index]
        return await self._run_method(chosen.method, scopes, credential_id=chosen.id, options=options)

    # --- the generic exchange -----------------------------------------------------------------

    async def step_up(
        self,
        method: str,
        *,
        requested_scopes: Iterable[str] | None = None,
        credential_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> IssuedToken:
        """Step up with one named method through its client half (no choice offered).

        Records a failure in ``state.error`` and raises it.
        """
        scopes = self._scopes(None, requested_scopes)
        return await self._guarded(
            self._run_method(
                method, scopes, credential_id=credential_id, options=options, params=params, timeout=timeout
            )
        )

    def _context(self, method: str, options: Mapping[str, Any]) -> ClientContext:
        return ClientContext(
            prompter=self.prompter,
            options={k: v for k, v in options.items() if v is not None},
            actor=self.actors.get(method),
        )

    async def _begin(
        self,
        method: str,
        credential_id: str | None,
        scopes: Sequence[str],
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"method": method, "requestedScopes": list(scopes)}
        if credential_id is not None:
            body["credentialId"] = credential_id
        if params:
            body["params"] = dict(params)
        data = await self._api("POST", "/challenges", body)
        if not isinstance(data, dict) or not isinstance(data.get("challengeId"), str):
            raise ServerError("the step-up server's challenge has no challengeId")
        return data

    async def _verify(
        self,
        method: str,
        response: Mapping[str, Any],
        scopes: Sequence[str],
        *,
        challenge_id: str | None = None,
        credential_id: str | None = None,
    ) -> IssuedToken:
        body: dict[str, Any] = {"method": method, "response": dict(response), "requestedScopes": list(scopes)}
        if challenge_id is not None:
            body["challengeId"] = challenge_id
        if credential_id is not None:
            body["credentialId"] = credential_id
        token = _lenient(await self._api("POST", "/verify", body), IssuedToken)
        self.jar.put(token)
        return token

    async def _run_method(
        self,
        method: str,
        scopes: Sequence[str],
        *,
        credential_id: str | None = None,
        options: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> IssuedToken:
        options = dict(options or {})
        info = await self._method_info(method)
        client_method = self.client_methods().get(method)
        if client_method is None and info.interaction is not Interaction.CODE:
            raise missing(method)
        ctx = self._context(method, options)
        if info.requires_challenge:
            challenge = await self._begin(method, credential_id, scopes, params)
        else:
            challenge = {
                "challengeId": None,
                "method": method,
                "interaction": info.interaction.value,
                "credentialId": credential_id,
                "requestedScopes": list(scopes),
                "data": {},
            }
        if method == "otp" and challenge.get("challengeId"):
            self._otp = _PendingOtp(challenge["challengeId"], challenge.get("credentialId"), tuple(scopes))
        answer = await self._answer(method, client_method, challenge, ctx)
        if answer.completed_elsewhere:
            return await self._await_completion(
                challenge["challengeId"], self.social_timeout if timeout is None else timeout
            )
        if answer.response is None:
            raise VerificationFailed(f"the {method!r} client method gave no response to send")
        token = await self._verify(
            method,
            answer.response,
            scopes,
            challenge_id=challenge.get("challengeId"),
            credential_id=credential_id if not info.requires_challenge else None,
        )
        if self._otp is not None and self._otp.challenge_id == challenge.get("challengeId"):
            self._otp = None
        return token

    async def _answer(
        self, method: str, client_method: ClientMethod | None, challenge: Mapping[str, Any], ctx: ClientContext
    ) -> Answer:
        if client_method is not None:
            return await client_method.answer(challenge, ctx)
        code = ctx.options.get("code")
        if code is None:
            data = challenge.get("data") or {}
            destination = data.get("destination")
            label = f"Code sent to {destination}" if destination else _CODE_LABELS.get(method, f"Code for {method}")
            code = await self.prompter.ask_code(label)
        return Answer(response={"code": str(code).strip()})

    async def _await_completion(self, challenge_id: str, timeout: float) -> IssuedToken:
        """Poll a challenge completed elsewhere (a browser callback) until it settles."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        interval = self.poll_interval
        while True:
            state = _lenient(await self._api("GET", f"/challenges/{challenge_id}"), ChallengeState)
            if state.grant is not None:
                self.jar.put(state.grant)
                return state.grant
            if state.status is ChallengeStatus.FAILED:
                raise VerificationFailed(
                    f"the {state.method} sign-in failed: {state.failure or 'no reason given'}", method=state.method
                )
            if state.status is ChallengeStatus.CONSUMED:
                raise ChallengeUsed("the challenge was completed, but its token was already picked up")
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

    def _credential_for(
        self, method: str, explicit: str | None, formats: Iterable[CredentialFormat] = ()
    ) -> str | None:
        """The credential a verify call uses: the argument, else the client's ``credential_id``
        when it belongs to ``method`` (or when no check told us what it is)."""
        if explicit is not None:
            return explicit
        if self.credential_id is None:
            return None
        known = {c.id: c for c in (self.last_check.credentials if self.last_check else ())}
        credential = known.get(self.credential_id)
        if credential is None or credential.method == method or credential.format in set(formats):
            return self.credential_id
        return None

    # --- re-authentication verifiers: failures are recorded, not raised ----------------------

    async def send_otp(
        self, credential_id: str | None = None, *, requested_scopes: Iterable[str] | None = None
    ) -> OtpSent:
        """Send a one-time code (``otp`` challenge). The default credential is the client's
        ``credential_id``, else the first sign-in email or phone from the last check. Raises on
        failure (and records it)."""
        try:
            scopes = self._scopes(None, requested_scopes)
            chosen = (
                self._credential_for("otp", credential_id, (CredentialFormat.EMAIL, CredentialFormat.PHONE_NUMBER))
                or self._default_otp_credential()
            )
            challenge = await self._begin("otp", chosen, scopes)
        except StepUpError as exc:
            raise self._record(exc) from None
        data = challenge.get("data") or {}
        sent_to = data.get("credentialId") or challenge.get("credentialId") or chosen or ""
        self._otp = _PendingOtp(challenge["challengeId"], sent_to or None, tuple(scopes))
        return OtpSent(
            verification_type=str(data.get("verificationType", "email")),
            credential_id=str(sent_to),
            destination=data.get("destination"),
        )

    def _default_otp_credential(self) -> str | None:
        credentials = self.last_check.credentials if self.last_check else ()
        codes = [c for c in credentials if c.format in (CredentialFormat.EMAIL, CredentialFormat.PHONE_NUMBER)]
        for credential in codes:
            if credential.sign_in:
                return credential.id
        return codes[0].id if codes else None

    async def verify_otp(self, code: str, *, requested_scopes: Iterable[str] | None = None) -> IssuedToken | None:
        """Verify the code :meth:`send_otp` sent. Calling it first is an error (raised); a wrong
        code is recorded in ``state.error`` and answers None."""
        pending = self._otp
        if pending is None:
            raise self._record(ChallengeNotFound("no code was sent yet: call send_otp() before verify_otp()"))
        scopes = tuple(requested_scopes) if requested_scopes is not None else pending.requested_scopes
        try:
            token = await self._verify("otp", {"code": str(code).strip()}, scopes, challenge_id=pending.challenge_id)
        except StepUpError as exc:
            if (
                isinstance(exc, ChallengeExpired | ChallengeUsed | ChallengeNotFound)
                or exc.code == "attempts_exhausted"
            ):
                self._otp = None
            self._record(exc)
            return None
        self._otp = None
        return token

    async def verify_wallet(
        self,
        signer: Any = None,
        wallet_id: str | None = None,
        *,
        requested_scopes: Iterable[str] | None = None,
    ) -> IssuedToken | None:
        """Sign the server's message with the wallet (``signer`` reaches the wallet client
        method). A failure is recorded in ``state.error`` and answers None; a missing
        stepup-wallet raises."""
        return await self._soft(
            "wallet",
            requested_scopes,
            credential_id=self._credential_for("wallet", wallet_id, (CredentialFormat.BLOCKCHAIN,)),
            options={"signer": signer},
        )

    async def verify_social(
        self,
        provider: str,
        open_url: Any = None,
        timeout: float | None = None,
        *,
        requested_scopes: Iterable[str] | None = None,
    ) -> IssuedToken | None:
        """Sign in again with ``provider`` in a browser (``open_url(url)`` opens it), then wait
        for the server's callback. A failure or timeout is recorded in ``state.error`` and
        answers None; a missing stepup-social raises."""
        return await self._soft(
            "social",
            requested_scopes,
            options={"open_url": open_url, "provider": provider},
            params={"provider": provider},
            timeout=timeout,
        )

    async def _soft(
        self,
        method: str,
        requested_scopes: Iterable[str] | None,
        *,
        credential_id: str | None = None,
        options: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> IssuedToken | None:
        try:
            scopes = self._scopes(None, requested_scopes)
            return await self._run_method(
                method, scopes, credential_id=credential_id, options=options, params=params, timeout=timeout
            )
        except ClientMethodMissing as exc:
            raise self._record(exc) from None
        except StepUpError as exc:
            self._record(exc)
            return None

    # --- MFA verifiers: failures are recorded and raised --------------------------------------

    async def verify_passkey_mfa(
        self,
        authenticator: Any = None,
        credential_id: str | None = None,
        *,
        requested_scopes: Iterable[str] | None = None,
    ) -> IssuedToken:
        """Answer a passkey challenge with ``authenticator`` (or the passkey client method's
        default). Records and raises failures."""
        try:
            scopes = self._scopes(None, requested_scopes)
            return await self._run_method(
                "passkey",
                scopes,
                credential_id=self._credential_for("passkey", credential_id, (CredentialFormat.PASSKEY,)),
                options={"authenticator": authenticator},
            )
        except StepUpError as exc:
            raise self._record(exc) from None

    async def verify_totp_mfa(
        self, code: str, device_id: str | None = None, *, requested_scopes: Iterable[str] | None = None
    ) -> IssuedToken:
        """Verify a code from an authenticator app. Records and raises failures."""
        try:
            scopes = self._scopes(None, requested_scopes)
            return await self._verify(
                "totp",
                {"code": str(code).strip()},
                scopes,
                credential_id=self._credential_for("totp", device_id, (CredentialFormat.TOTP,)),
            )
        except StepUpError as exc:
            raise self._record(exc) from None

    async def verify_recovery_code(self, code: str, *, requested_scopes: Iterable[str] | None = None) -> IssuedToken:
        """Verify a single-use recovery code. Records and raises failures."""
        try:
            scopes = self._scopes(None, requested_scopes)
            return await self._verify("recovery", {"code": str(code).strip()}, scopes)
        except StepUpError as exc:
            raise self._record(exc) from None

    # --- credentials and enrolment ------------------------------------------------------------

    def _token_header(self, scope: str) -> dict[str, str]:
        token = self.jar.take(scope)
        return {ELEVATED_TOKEN_HEADER: token.elevated_access_token} if token else {}

    async def list_credentials(self) -> list[CredentialView]:
        data = await self._api("GET", "/credentials")
        items = data.get("credentials", data) if isinstance(data, dict) else data
        return [_lenient(item, CredentialView) for item in items or []]

    async def begin_enrollment(
        self, method: str, params: Mapping[str, Any] | None = None, *, alias: str | None = None
    ) -> EnrollmentStart:
        """``POST /enrollments``; carries a ``credential:link`` token when the jar holds one."""
        body: dict[str, Any] = {"method": method, "params": dict(params or {})}
        if alias is not None:
            body["alias"] = alias
        data = await self._api("POST", "/enrollments", body, headers=self._token_header("credential:link"))
        return _lenient(data, EnrollmentStart)

    async def complete_enrollment(self, enrollment_id: str, response: Mapping[str, Any]) -> CredentialView:
        """``POST /enrollments/{id}``; carries a ``credential:link`` token when the jar holds one
        (the server asks for it when another credential was linked while this one was pending)."""
        data = await self._api(
            "POST",
            f"/enrollments/{enrollment_id}",
            {"response": dict(response)},
            headers=self._token_header("credential:link"),
        )
        return _lenient(data, CredentialView)

    async def enroll(self, method: str, *, alias: str | None = None, **options: Any) -> CredentialView:
        """Enrol a credential through the method's client half (parameters, then the answer).

        A user who already has a credential needs a ``credential:link`` token first
        (``prompt_step_up_auth("credential:link")``)."""
        client_method = self.client_methods().get(method)
        if client_method is None:
            raise missing(method)
        ctx = self._context(method, options)
        params = await client_method.enrollment_params(ctx)
        start = await self.begin_enrollment(method, params, alias=alias)
        response = await client_method.answer_enrollment(_wire_enrollment(start), ctx)
        if start.credential is not None:
            # Completed at once (recovery codes): the method kept or showed what it was given.
            return start.credential
        if (await self._method_info(method)).interaction is Interaction.REDIRECT:
            # Completed by the provider's redirect to the server: wait for the link to appear.
            timeout = options.get("timeout")
            return await self._await_enrollment(
                start.enrollment_id, self.social_timeout if timeout is None else float(timeout)
            )
        return await self.complete_enrollment(start.enrollment_id, response)

    async def _await_enrollment(self, enrollment_id: str, timeout: float) -> CredentialView:
        """Poll an enrolment completed elsewhere (a browser callback) until it links a credential."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        interval = self.poll_interval
        while True:
            state = _lenient(await self._api("GET", f"/challenges/{enrollment_id}"), ChallengeState)
            if state.credential_id is not None:
                linked = [c for c in await self.list_credentials() if c.id == state.credential_id]
                if linked:
                    return linked[0]
            if state.status is ChallengeStatus.FAILED:
                raise VerificationFailed(
                    f"linking with {state.method} failed: {state.failure or 'no reason given'}", method=state.method
                )
            if state.expires_at <= self.clock.now():
                raise ChallengeExpired(f"the {state.method} enrolment expired before it was completed")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ChallengePending(
                    f"the {state.method} sign-in was not completed within {timeout:g} s",
                    challengeId=enrollment_id,
                )
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 1.5, self.max_poll_interval)

    async def delete_credential(self, credential_id: str) -> None:
        """Remove a credential; needs a ``credential:unlink`` token in the jar."""
        await self._api("DELETE", f"/credentials/{credential_id}", headers=self._token_header("credential:unlink"))

    async def revoke_grants(self) -> int:
        """Revoke every elevated token of this session, on the server and in the jar."""
        data = await self._api("DELETE", "/grants")
        self.jar.clear()
        revoked = data.get("revoked", 0) if isinstance(data, dict) else 0
        return int(revoked) if isinstance(revoked, int) else 0

    # --- the application's own routes ---------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        scope: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> AppResponse:
        """Call the application. ``scope`` declares the step-up scope the route needs: the jar's
        token for it goes in ``X-Elevated-Access-Token`` (a single-use token leaves the jar).

        With ``auto_step_up``, a 401 ``insufficient_user_authentication`` runs the prompt with the
        check result from the answer and retries once. Other answers are returned as they are
        (see :meth:`AppResponse.raise_for_problem`)."""
        response = await self._send(method, url, scope, headers, kwargs)
        challenge = response.step_up_challenge()
        if not self.auto_step_up or challenge is None:
            return response
        needed = challenge.get("scope") or scope
        if not needed:
            return response
        await self._prompt_from_refusal(response, needed)
        return await self._send(method, url, needed, headers, kwargs)

    async def get(self, url: str, *, scope: str | None = None, **kwargs: Any) -> AppResponse:
        return await self.request("GET", url, scope=scope, **kwargs)

    async def post(self, url: str, *, scope: str | None = None, **kwargs: Any) -> AppResponse:
        return await self.request("POST", url, scope=scope, **kwargs)

    async def put(self, url: str, *, scope: str | None = None, **kwargs: Any) -> AppResponse:
        return await self.request("PUT", url, scope=scope, **kwargs)

    async def delete(self, url: str, *, scope: str | None = None, **kwargs: Any) -> AppResponse:
        return await self.request("DELETE", url, scope=scope, **kwargs)

    async def _send(
        self,
        method: str,
        url: str,
        scope: str | None,
        headers: Mapping[str, str] | None,
        kwargs: Mapping[str, Any],
    ) -> AppResponse:
        all_headers = self._base_headers()
        all_headers.update(headers or {})
        token = self.jar.take(scope) if scope else None
        if token is not None:
            all_headers[ELEVATED_TOKEN_HEADER] = token.elevated_access_token
        target = self._url(url)

        async def call() -> AppResponse:
            try:
                async with self._session().request(method, target, headers=all_headers, **kwargs) as resp:
                    return AppResponse(
                        status=resp.status,
                        headers=resp.headers,
                        body=await resp.read(),
                        token_sent=token.elevated_access_token if token else None,
                    )
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise ServerError(f"could not reach {target}: {exc or type(exc).__name__}") from exc

        response = await self._loading_while(call())
        if token is not None and response.step_up_challenge() is not None:
            self.jar.discard(token.elevated_access_token)
        return response

    async def _prompt_from_refusal(self, response: AppResponse, scope: str) -> IssuedToken | None:
        problem = response.problem()
        check_data = getattr(problem, "check", None)
        check: CheckResult | None = None
        if isinstance(check_data, dict):
            try:
                check = _lenient(check_data, CheckResult)
            except StepUpError:
                check = None
        if check is None:
            return await self.prompt_step_up_auth(scope)
        self.last_check = check
        self._last_scopes = (scope,)
        factor = Factor.MFA if check.route is Route.MFA else Factor.REAUTH
        return await self._guarded(self._choose_and_run(check, factor, (scope,), None, {}))


def _wire_enrollment(start: EnrollmentStart) -> dict[str, Any]:
    from ..serialization import unstructure

    wire: dict[str, Any] = unstructure(start)
    return wire
