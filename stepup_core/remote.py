"""``RemoteGuard``: guard a Python application's routes with a ``stepup serve`` beside it.

For an application that does not share stepup's store: the guard asks the server over
``POST {prefix}/introspect`` (a service credential, RFC 7662) and answers exactly as a guard
with the store at hand would. A single-use token is spent by the server, atomically, so two
application instances cannot both let it through.

::

    from stepup_core.remote import RemoteGuard

    gate = RemoteGuard("http://127.0.0.1:8080/stepup", credential=os.environ["STEPUP_SERVICE_CREDENTIAL"])

    @requires_scope("wallet:export", gate=gate, identify=identify)     # aiohttp
    async def export_key(request): ...

The FastAPI, Django and Flask guards take ``gate=`` too. A guard with ``transaction=`` sends the
details it built (``transaction`` in the call); the server refuses a token bound to other details
(403 ``transaction_mismatch``, not consumed) and the guard answers that refusal as it is. When
the server cannot be reached, or
answers 5xx, the guard answers ``503 store_unavailable``: never a grant. A refused service
credential or a scope the server does not know is the application's misconfiguration: ``500
config_error``, logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

import attrs

from .errors import ConfigError, InvalidTransaction, StoreUnavailable
from .models import Grant, Principal
from .server.guard import Elevation, TransactionDetails
from .server.http import Answer
from .server.problems import PROBLEM_HEADER_VALUE, internal_error, problem_answer
from .transaction import canonical_form

log = logging.getLogger("stepup.remote")


def _grant_from(body: dict[str, Any], token: str | None) -> Grant | None:
    if not body.get("sub") or body.get("scope") is None:
        return None  # allowed without a grant: the scope needs no step-up
    auth_time = body.get("auth_time")
    return Grant(
        token_hash=hashlib.sha256(token.encode()).hexdigest() if token and body.get("active") else "",
        user_id=str(body["sub"]),
        session_id=str(body.get("sid") or ""),
        scopes=tuple(str(body["scope"]).split()),
        method=str(body.get("method") or ""),
        issued_at=float(body.get("iat") or 0),
        expires_at=float(body.get("exp") or 0),
        single_use=bool(body.get("singleUse")),
        acr=body.get("acr"),
        amr=tuple(body.get("amr") or ()),
        auth_time=float(auth_time) if isinstance(auth_time, int | float) else None,
        transaction_hash=str(body["transactionHash"]) if body.get("transactionHash") else None,
    )


def _problem(status: int, problem: dict[str, Any], headers: dict[str, str]) -> Answer:
    body = json.dumps(problem, separators=(",", ":")).encode()
    return Answer(status, body, (("Content-Type", PROBLEM_HEADER_VALUE), *headers.items()))


@attrs.define
class RemoteGuard:
    """A :class:`~stepup_core.server.guard.Gate` that asks a stepup server.

    :param base_url: the server's protocol URL, prefix included (``http://127.0.0.1:8080/stepup``).
    :param credential: a service credential (``sis_...``) whose hash the server lists under
        ``[introspection.clients]``.
    :param timeout: seconds for one introspection call.
    """

    base_url: str
    credential: str = attrs.field(repr=False)
    timeout: float = 5.0
    _http: Any = attrs.field(default=None, init=False, repr=False)
    _loop: Any = attrs.field(default=None, init=False, repr=False)

    def _session(self) -> Any:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._http is None or self._http.closed or self._loop is not loop:
            # A session belongs to one event loop; a guard used from another (a new test loop,
            # a worker) gets its own.
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._loop = loop
        return self._http

    async def close(self) -> None:
        if self._http is not None and not self._http.closed:
            await self._http.close()
        self._http = None

    async def introspect(
        self,
        scope: str,
        principal: Principal,
        token: str | None,
        *,
        consume: bool = True,
        transaction: TransactionDetails = None,
    ) -> tuple[int, Any]:
        """One ``POST {prefix}/introspect`` call: the status and the parsed JSON body."""
        payload: dict[str, Any] = {
            "scope": scope,
            "sub": principal.user_id,
            "sid": principal.session_id,
            "token": token,
            "consume": consume,
        }
        if transaction is not None:
            payload["transaction"] = dict(transaction)
        if principal.acr is not None:
            payload["acr"] = principal.acr
        if principal.amr:
            payload["amr"] = list(principal.amr)
        if principal.auth_time is not None:
            payload["auth_time"] = principal.auth_time
        url = self.base_url.rstrip("/") + "/introspect"
        headers = {"Authorization": f"Bearer {self.credential}"}
        async with self._session().post(url, json=payload, headers=headers) as response:
            raw = await response.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            return response.status, body

    async def decide(
        self,
        scope: str,
        principal: Principal,
        token: str | None,
        *,
        where: str,
        transaction: TransactionDetails = None,
    ) -> Elevation | Answer:
        if transaction is not None:
            try:
                canonical_form(transaction)  # refused here as a guard with the store refuses it (422)
            except InvalidTransaction as exc:
                return problem_answer(exc)
        try:
            status, body = await self.introspect(scope, principal, token, transaction=transaction)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - unreachable or garbled: never a grant
            log.error("protected route %s: the stepup server at %s could not be asked: %r", where, self.base_url, exc)
            return problem_answer(StoreUnavailable("the stepup server cannot be reached"))
        if status == 200 and isinstance(body, dict):
            if body.get("allow") is True:
                checked = None if transaction is None else dict(transaction)
                return Elevation(principal, scope, _grant_from(body, token), checked)
            challenge = body.get("challenge")
            if isinstance(challenge, dict) and isinstance(challenge.get("body"), str):
                headers = tuple((str(k), str(v)) for k, v in dict(challenge.get("headers") or {}).items())
                return Answer(int(challenge["status"]), challenge["body"].encode(), headers)
        code = body.get("code") if isinstance(body, dict) else None
        if status >= 500 or status == 429:
            # The server's own trouble (its store is down): the same 503 a local guard answers.
            if code == "store_unavailable" and isinstance(body, dict):
                return _problem(503, body, {"Cache-Control": "no-store"})
            log.error("protected route %s: the stepup server answered %s (%s)", where, status, code)
            return problem_answer(StoreUnavailable("the stepup server could not decide"))
        if code == "invalid_scope":
            log.error("protected route %s uses scope %r, which the stepup server does not know", where, scope)
            return problem_answer(
                ConfigError(f"this route is guarded by scope {scope!r}, which is not declared on the server")
            )
        if code == "invalid_client":
            log.error("the stepup server refuses this application's service credential (%s)", where)
            return problem_answer(ConfigError("this application's stepup service credential is refused"))
        log.error("protected route %s: unexpected introspection answer %s: %r", where, status, body)
        return problem_answer(internal_error())
