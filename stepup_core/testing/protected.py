"""The protected-route conformance suite: every guard answers exactly like the aiohttp guard.

A guard for a framework (aiohttp's ``requires_scope``, the FastAPI dependency, the Django and
Flask decorators, a ``RemoteGuard``, a handler in another language asking the sidecar) passes
when, over real HTTP, it answers these cases byte for byte as stepup's own guard core does:

========================  ==============================================================
case                      what the guard must answer
========================  ==============================================================
``valid``                 200; the handler sees the caller and the grant; a time-bound
                          token works again
``no_token``              401, the RFC 9470 challenge, the problem body with the check
``wrong_scope``           401 for a token of another scope (which stays usable)
``other_user``            401 for another user's token (which stays usable)
``other_session``         401 for the same user's token from another session
``expired``               401 once the token has expired
``single_use_reuse``      a single-use token sent by 100 concurrent requests: one 200,
                          99 401s
``store_down``            503 ``store_unavailable`` while the store is gone (with a token,
                          without one); the single-use token is not spent
``anonymous``             401 ``unauthenticated`` when ``identify`` finds nobody
``transaction_once``      a token bound to a payment's details: the payment with those
                          details runs once (the handler sees the checked details), then
                          401 with ``check.transaction``; without a token the same 401
``transaction_changed``   403 ``transaction_mismatch`` for a changed amount or payee, and
                          the token is not spent; 401 for another user, and for a token
                          of the scope bound to no details; 422 ``invalid_transaction``
                          for a body the builder cannot read
``transaction_reordered`` the same details with keys in another order, other white space
                          and ``120.0`` for ``120``: the same RFC 8785 form, accepted
``transaction_concurrent`` 100 concurrent payments with the token: one 200, 99 401s
========================  ==============================================================

Subclass :class:`ProtectedRouteSuite`, name the ``adapter`` and provide an async ``target``
fixture yielding a :class:`ProtectedTarget`: an application served on loopback (by the
framework's real server, or its test server where a server adds nothing) with two routes,

- ``POST /wallet/export`` guarded by ``wallet:export`` (single-use),
- ``POST /profile`` guarded by ``user:update`` (time-bound),

each answering ``200`` with :func:`handler_body` of the caller and grant, and, for the
transaction cases,

- ``POST /payments/send`` guarded by ``payments:send`` with the framework's ``transaction=``
  builder reading the JSON request body (:data:`TRANSACTION_ROUTES`), answering
  :func:`handler_body` with the details the guard checked (the elevation's ``transaction``).

Callers are identified by :func:`header_identify` (``Authorization: Bearer <user>:<session>``). :func:`service_target`
builds the target's means (minting, expected answers, the store switch) for a service in this
event loop (:func:`conformance_service` makes one); :func:`portal_target` for one living in a
:class:`~stepup_core.portal.Portal` (:func:`hosted_conformance_service`).

The outcomes are collected per adapter and case: :func:`conformance_table` renders them, and a
``conftest.py`` that imports :func:`pytest_runtest_logreport` and :func:`pytest_terminal_summary`
prints the table at the end of the run (import :func:`pytest_runtest_setup` too).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp
import attrs
import pytest

from ..clock import ManualClock
from ..config import config_from_mapping
from ..errors import StoreUnavailable
from ..models import Grant, Principal
from ..server.http import TOKEN_HEADER, Answer
from ..server.problems import problem_answer
from ..transaction import transaction_hash
from .stores import SwitchableStore

if TYPE_CHECKING:
    from aiohttp import web

    from ..portal import HostedService, Portal
    from ..service import StepUpService

SINGLE_USE_PATH, SINGLE_USE_SCOPE = "/wallet/export", "wallet:export"
TIME_BOUND_PATH, TIME_BOUND_SCOPE = "/profile", "user:update"
#: The protected routes every target serves: path -> scope.
PROTECTED_ROUTES = {SINGLE_USE_PATH: SINGLE_USE_SCOPE, TIME_BOUND_PATH: TIME_BOUND_SCOPE}
PAYMENT_PATH, PAYMENT_SCOPE = "/payments/send", "payments:send"
#: The routes every target guards with ``transaction=`` (the JSON body is the details): path -> scope.
TRANSACTION_ROUTES = {PAYMENT_PATH: PAYMENT_SCOPE}
#: What the suite's service configures for them (every step-up for a payment names it).
TRANSACTION_SCOPES: dict[str, dict[str, Any]] = {PAYMENT_SCOPE: {"transaction_required": True}}
PAYMENT = {"amount": "120.00", "currency": "EUR", "payee": "ACME Ltd", "reference": 120}
ALICE = Principal("alice", "alice-s1")
ALICE_OTHER_SESSION = Principal("alice", "alice-s2")
BOB = Principal("bob", "bob-s1")
CONCURRENT_REQUESTS = 100
#: The headers every guard's answer is compared on (besides status and body).
COMPARED_HEADERS = ("Content-Type", "Cache-Control", "WWW-Authenticate")
CASES = (
    "valid",
    "no_token",
    "wrong_scope",
    "other_user",
    "other_session",
    "expired",
    "single_use_reuse",
    "store_down",
    "anonymous",
    "transaction_once",
    "transaction_changed",
    "transaction_reordered",
    "transaction_concurrent",
)


# --- what every target's application does ---------------------------------------------------


def session_header(principal: Principal) -> dict[str, str]:
    return {"Authorization": f"Bearer {principal.user_id}:{principal.session_id}"}


def principal_from_headers(headers: Any) -> Principal | None:
    """``Authorization: Bearer <user>:<session>`` -> the principal (any framework's headers)."""
    scheme, _, value = str(headers.get("Authorization") or "").partition(" ")
    user, sep, session = value.partition(":")
    if scheme != "Bearer" or not sep or not user or not session:
        return None
    return Principal(user, session)


async def header_identify(request: Any) -> Principal | None:
    """The suite's ``identify``, for any request object with ``headers.get``."""
    return principal_from_headers(request.headers)


def handler_body(
    principal: Principal | None, grant: Grant | None, scope: str, transaction: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What a protected handler answers: proof that it saw the caller and the grant (and, on a
    transaction route, the details the guard checked)."""
    return {
        "scope": scope,
        "user": principal.user_id if principal else None,
        "session": principal.session_id if principal else None,
        "method": grant.method if grant else None,
        "singleUse": grant.single_use if grant else None,
        "transaction": dict(transaction) if transaction is not None else None,
    }


def json_body_details(body: bytes) -> Any:
    """The suite's transaction builders read the JSON body as the details (any framework)."""
    return json.loads(body) if body else None


def aiohttp_target_app(app: web.Application | None = None, **guard: Any) -> web.Application:
    """The suite's routes on an aiohttp application (a new one unless given), each guarded with
    ``requires_scope(scope, **guard)`` (``gate=``, ``identify=``), the payment route with the
    JSON body as its ``transaction``: the application aiohttp targets serve."""
    from aiohttp import web

    from ..server import grant_of, principal_from, requires_scope, transaction_of

    app = app if app is not None else web.Application()
    for path, scope in PROTECTED_ROUTES.items():

        @requires_scope(scope, **guard)
        async def handler(request: web.Request, scope: str = scope) -> web.Response:
            return web.json_response(handler_body(principal_from(request), grant_of(request), scope))

        app.router.add_post(path, handler)

    async def details(request: web.Request) -> Any:
        return json_body_details(await request.read())

    for path, scope in TRANSACTION_ROUTES.items():

        @requires_scope(scope, transaction=details, **guard)
        async def pay(request: web.Request, scope: str = scope) -> web.Response:
            body = handler_body(principal_from(request), grant_of(request), scope, transaction_of(request))
            return web.json_response(body)

        app.router.add_post(path, pay)
    return app


# --- the target --------------------------------------------------------------------------------


@attrs.define
class ProtectedTarget:
    """A guarded application on loopback and the means to set up each case.

    :param base_url: where the application listens.
    :param mint: ``await mint(principal, scope, ttl, transaction=None)``: a real elevated token in
        the store the guard reads (bound to ``transaction`` details when given).
    :param refusal: ``await refusal(principal, scope, transaction=None)``: the answer stepup's
        guard core gives without a valid token (the expected 401, check included; with the
        action's details for a transaction route).
    :param mismatch: ``await mismatch(scope, transaction)``: the 403 ``transaction_mismatch``
        stepup's guard core gives for a token bound to other details.
    :param set_store_down: ``await set_store_down(True)`` makes the store unreachable.
    :param advance: lets the guard's clock move on (None: the guard runs on real time, and the
        ``expired`` case mints a one-second token and waits).
    :param store_down_expected: the answer while the store is down.
    """

    base_url: str
    mint: Callable[..., Awaitable[str]]
    refusal: Callable[..., Awaitable[Answer]]
    mismatch: Callable[[str, Mapping[str, Any]], Awaitable[Answer]]
    set_store_down: Callable[[bool], Awaitable[None]]
    advance: Callable[[float], Awaitable[None]] | None = None
    store_down_expected: Answer = attrs.field(factory=lambda: problem_answer(StoreUnavailable("store down")))
    unauthenticated_expected: Answer = attrs.field(factory=lambda: _unauthenticated())
    unreadable_details_expected: Answer = attrs.field(factory=lambda: _unreadable_details())


def _unauthenticated() -> Answer:
    from ..errors import Unauthenticated

    return problem_answer(Unauthenticated("sign in first: this route needs the application's session"))


def _unreadable_details() -> Answer:
    from ..errors import InvalidTransaction
    from ..server.guard import UNREADABLE_DETAILS

    return problem_answer(InvalidTransaction(UNREADABLE_DETAILS))


async def expected_mint(
    service: StepUpService, principal: Principal, scope: str, ttl: float, transaction: Mapping[str, Any] | None = None
) -> str:
    """A real token from ``service``'s token store (bound to ``transaction`` when given)."""
    behavior, _ = service.policies.token_shape([scope])
    issued = await service.tokens.mint(
        principal,
        [scope],
        method="conformance",
        ttl=ttl,
        single_use=behavior.value == "single_use",
        transaction_hash=transaction_hash(transaction) if transaction is not None else None,
    )
    return issued.elevated_access_token


async def expected_refusal(
    service: StepUpService, principal: Principal, scope: str, transaction: Mapping[str, Any] | None = None
) -> Answer:
    """The 401 stepup's guard core answers ``principal`` without a valid token for ``scope``
    (and the action's ``transaction`` details)."""
    message = f"step-up authentication is required for {scope}"
    return problem_answer(await service.gate.step_up_required(principal, scope, message, transaction))


async def expected_mismatch(service: StepUpService, scope: str, transaction: Mapping[str, Any]) -> Answer:
    """The 403 stepup's guard core answers for a token bound to other details than ``transaction``."""
    return problem_answer(service.gate.transaction_mismatch(scope, transaction))


def service_target(base_url: str, service: StepUpService, store: SwitchableStore) -> ProtectedTarget:
    """The means of a target whose guard uses ``service`` in this event loop."""

    async def set_down(down: bool) -> None:
        store.down = down

    clock = service.clock

    async def advance(seconds: float) -> None:
        assert isinstance(clock, ManualClock)
        clock.advance(seconds)

    return ProtectedTarget(
        base_url=base_url,
        mint=lambda principal, scope, ttl, transaction=None: expected_mint(service, principal, scope, ttl, transaction),
        refusal=lambda principal, scope, transaction=None: expected_refusal(service, principal, scope, transaction),
        mismatch=lambda scope, transaction: expected_mismatch(service, scope, transaction),
        set_store_down=set_down,
        advance=advance if isinstance(clock, ManualClock) else None,
    )


def portal_target(base_url: str, service: StepUpService, store: SwitchableStore, portal: Portal) -> ProtectedTarget:
    """The means of a target whose guard uses ``service`` living in ``portal``."""
    local = service_target(base_url, service, store)

    async def mint(principal: Principal, scope: str, ttl: float, transaction: Mapping[str, Any] | None = None) -> str:
        return await portal.run(expected_mint(service, principal, scope, ttl, transaction))

    async def refusal(principal: Principal, scope: str, transaction: Mapping[str, Any] | None = None) -> Answer:
        return await portal.run(expected_refusal(service, principal, scope, transaction))

    async def mismatch(scope: str, transaction: Mapping[str, Any]) -> Answer:
        return await portal.run(expected_mismatch(service, scope, transaction))

    return attrs.evolve(local, mint=mint, refusal=refusal, mismatch=mismatch)


@asynccontextmanager
async def conformance_service(
    directory: Path,
    *,
    clock: ManualClock | None = None,
    config: dict[str, Any] | None = None,
    plugins: Sequence[object] = (),
) -> AsyncIterator[tuple[StepUpService, SwitchableStore]]:
    """A service on SQLite in ``directory`` behind a :class:`SwitchableStore`, no methods, a
    manual clock, the transaction routes' scopes (:data:`TRANSACTION_SCOPES`): what the suite's
    targets guard with. ``config`` may name another ``store``, registered by one of ``plugins``
    (a store plugin runs the suite on its own backend)."""
    from ..plugins import get_plugin_manager
    from ..service import StepUpService
    from ..store import open_store

    clock = clock or ManualClock()
    settings: dict[str, Any] = {
        "store": f"sqlite:{directory / 'stepup.sqlite3'}",
        "secret_key": secrets.token_hex(32),
        "scopes": dict(TRANSACTION_SCOPES),
    }
    settings.update(config or {})
    configured = config_from_mapping(settings)
    pm = get_plugin_manager(load_entrypoints=False)
    for plugin in plugins:
        pm.register(plugin)
    store = SwitchableStore(await open_store(configured.store, pm, clock))
    service = await StepUpService.create(configured, pm=pm, clock=clock, store=store)
    try:
        yield service, store
    finally:
        await service.close()


@contextmanager
def hosted_conformance_service(
    directory: Path, *, config: dict[str, Any] | None = None
) -> Iterator[tuple[HostedService, SwitchableStore]]:
    """:func:`conformance_service` living in a :class:`~stepup_core.portal.Portal`, for guards
    of synchronous frameworks (Flask, Django)."""
    from ..portal import HostedService

    stores: list[SwitchableStore] = []
    exits: list[Any] = []

    async def factory() -> StepUpService:
        context = conformance_service(directory, config=config)
        service, store = await context.__aenter__()
        stores.append(store)
        exits.append(context)
        return service

    hosted = HostedService.open(factory)

    async def close(_: Any = None) -> None:
        await exits[0].__aexit__(None, None, None)

    try:
        yield hosted, stores[0]
    finally:
        hosted.portal.call(close)
        hosted.portal.close()


# --- the suite -------------------------------------------------------------------------------


@attrs.frozen
class Seen:
    status: int
    headers: dict[str, str | None]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def _expected(answer: Answer) -> Seen:
    return Seen(answer.status, {h: answer.header(h) for h in COMPARED_HEADERS}, answer.body)


class ProtectedRouteSuite:
    """The cases; subclass it, set ``adapter`` and provide the ``target`` fixture."""

    #: The adapter's name in the conformance table (``aiohttp``, ``fastapi``, ``flask`` ...).
    adapter: ClassVar[str] = "?"

    @pytest.fixture
    async def http(self) -> AsyncIterator[aiohttp.ClientSession]:
        connector = aiohttp.TCPConnector(limit=CONCURRENT_REQUESTS + 10)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
            yield session

    async def post(
        self,
        http: aiohttp.ClientSession,
        target: ProtectedTarget,
        path: str,
        principal: Principal | None = ALICE,
        token: str | None = None,
        body: bytes | None = None,
    ) -> Seen:
        headers = session_header(principal) if principal is not None else {}
        if token is not None:
            headers[TOKEN_HEADER] = token
        if body is not None:
            headers["Content-Type"] = "application/json"
        async with http.post(target.base_url + path, headers=headers, data=body) as resp:
            body = await resp.read()
            return Seen(resp.status, {h: resp.headers.get(h) for h in COMPARED_HEADERS}, body)

    async def assert_refused(
        self,
        http: aiohttp.ClientSession,
        target: ProtectedTarget,
        path: str,
        principal: Principal = ALICE,
        token: str | None = None,
    ) -> None:
        seen = await self.post(http, target, path, principal, token)
        scope = PROTECTED_ROUTES[path]
        # The expected answer is computed for the principal the guard identified: the caller.
        assert seen == _expected(await target.refusal(principal, scope))

    async def assert_granted(
        self,
        http: aiohttp.ClientSession,
        target: ProtectedTarget,
        path: str,
        token: str,
        principal: Principal = ALICE,
    ) -> dict[str, Any]:
        seen = await self.post(http, target, path, principal, token)
        assert seen.status == 200, seen
        body = dict(seen.json())
        scope = PROTECTED_ROUTES[path]
        assert body["scope"] == scope and body["user"] == principal.user_id
        assert body["session"] == principal.session_id
        return body

    # --- the cases ---------------------------------------------------------------------------

    async def test_valid(self, target: ProtectedTarget, http: aiohttp.ClientSession) -> None:
        bound = await target.mint(ALICE, TIME_BOUND_SCOPE, 600)
        for _ in range(3):
            body = await self.assert_granted(http, target, TIME_BOUND_PATH, bound)
            assert body["method"] == "conformance" and body["singleUse"] is False
        single = await target.mint(ALICE, SINGLE_USE_SCOPE, 300)
        body = await self.assert_granted(http, target, SINGLE_USE_PATH, single)
        assert body["singleUse"] is True

    async def test_no_token(self, target: ProtectedTarget, http: aiohttp.ClientSession) -> None:
        for path in PROTECTED_ROUTES:
            await self.assert_refused(http, target, path)
        seen = await self.post(http, target, SINGLE_USE_PATH)
        assert seen.headers["WWW-Authenticate"] == (
            'Bearer error="insufficient_user_authentication", '
            'error_description="Step-up authentication is required for this action", scope="wallet:export"'
        )
        problem = seen.json()
        assert problem["code"] == "insufficient_user_authentication" and problem["check"]["isRequired"] is True

    async def test_wrong_scope(self, target: ProtectedTarget, http: aiohttp.ClientSession) -> None:
        bound = await target.mint(ALICE, TIME_BOUND_SCOPE, 600)
        await self.assert_refused(http, target, SINGLE_USE_PATH, token=bound)
        await self.assert_granted(http, target, TIME_BOUND_PATH, bound)

    async def test_other_user(self, target: ProtectedTarget, http: aiohttp.ClientSession) -> None:
        bobs = await target.mint(BOB, SINGLE_USE_SCOPE, 300)
        await self.assert_refused(http, target, SINGLE_USE_PATH, ALICE, bobs)
        await self.assert_granted(http, target, SINGLE_USE_PATH, bobs, BOB)  # not spent by the refusal

    async def test_other_session(self, target: ProtectedTarget, http: aiohttp.ClientSession) -> None:
        bound = await target.mint(ALICE, TIME_BOUND_SCOPE, 600)
        await self.assert_refused(http, target, TIME_BOUND_PATH, ALICE_OTHER_SESSION, bound)
        await self.assert_granted(http, target, TIME_BOUND_PATH, bound)

    async def test_expired(self, target: ProtectedTarget, http: aiohttp.ClientSession) -> None:
        if target.advance is not None:
            bound = await target.mint(ALICE, TIME_BOUND_SCOPE, 600)
            await self.assert_granted(http, target, TIME_BOUND_PATH, bound)
            await target.advance(601)
        else:
            bound = await target.mint(ALICE, TIME_BOUND_SCOPE, 1)
            await asyncio.sleep(1.2)
        await self.assert_refused(http, target, TIME_BOUND_PATH, token=bound)

    async def test_single_use_reuse(self, target: ProtectedTarget, http: aiohttp.ClientSession) -> None:
        single = await target.mint(ALICE, SINGLE_USE_SCOPE, 300)
        answers = await asyncio.gather(
            *(self.post(http, target, SINGLE_USE_PATH, ALICE, single) for _ in range(CONCURRENT_REQUESTS))
        )
        assert sorted(a.status for a in answers) == [200] + [401] * (CONCURRENT_REQUESTS - 1)
        refused = _expected(await target.refusal(ALICE, SINGLE_USE_SCOPE))
        assert all(a == refused for a in answers if a.status == 401)
        await self.assert_refused(http, target, SINGLE_USE_PATH, token=single)

    async def test_store_down(self, target: ProtectedTarget, http: aiohttp.ClientSession) -> None:
        single = await target.mint(ALICE, SINGLE_USE_SCOPE, 300)
        bound = await target.mint(ALICE, TIME_BOUND_SCOPE, 600)
        await target.set_store_down(True)
        try:
            expected = _expected(target.store_down_expected)
            for path, token in ((SINGLE_USE_PATH, single), (TIME_BOUND_PATH, bound), (TIME_BOUND_PATH, None)):
                seen = await self.post(http, target, path, ALICE, token)
                assert seen == expected, (path, seen)
                assert seen.json()["code"] == "store_unavailable"
        finally:
            await target.set_store_down(False)
        await self.assert_granted(http, target, SINGLE_USE_PATH, single)  # never spent while down

    async def test_anonymous(self, target: ProtectedTarget, http: aiohttp.ClientSession) -> None:
        seen = await self.post(http, target, SINGLE_USE_PATH, None)
        assert seen == _expected(target.unauthenticated_expected)
        assert seen.json()["code"] == "unauthenticated"

    # --- transaction binding -------------------------------------------------------------------

    async def pay(
        self,
        http: aiohttp.ClientSession,
        target: ProtectedTarget,
        details: Any,
        token: str | None,
        principal: Principal = ALICE,
    ) -> Seen:
        """``POST /payments/send`` with ``details`` (bytes as they are, else compact JSON)."""
        raw = details if isinstance(details, bytes) else json.dumps(details, separators=(",", ":")).encode()
        return await self.post(http, target, PAYMENT_PATH, principal, token, raw)

    async def assert_paid(
        self,
        http: aiohttp.ClientSession,
        target: ProtectedTarget,
        details: Any,
        token: str,
    ) -> None:
        seen = await self.pay(http, target, details, token)
        assert seen.status == 200, seen
        body = dict(seen.json())
        assert body["scope"] == PAYMENT_SCOPE and body["user"] == ALICE.user_id and body["singleUse"] is True
        assert body["transaction"] == PAYMENT  # the details the guard checked reach the handler

    async def test_transaction_once(self, target: ProtectedTarget, http: aiohttp.ClientSession) -> None:
        refused = _expected(await target.refusal(ALICE, PAYMENT_SCOPE, PAYMENT))
        seen = await self.pay(http, target, PAYMENT, None)
        assert seen == refused
        problem = seen.json()
        assert problem["code"] == "insufficient_user_authentication"
        assert problem["check"]["transaction"]["details"] == PAYMENT  # what to step up with
        assert problem["check"]["transaction"]["hash"] == transaction_hash(PAYMENT)
        bound = await target.mint(ALICE, PAYMENT_SCOPE, 300, transaction=PAYMENT)
        await self.assert_paid(http, target, PAYMENT, bound)
        assert await self.pay(http, target, PAYMENT, bound) == refused  # spent

    async def test_transaction_changed(self, target: ProtectedTarget, http: aiohttp.ClientSession) -> None:
        bound = await target.mint(ALICE, PAYMENT_SCOPE, 300, transaction=PAYMENT)
        for changed in ({**PAYMENT, "amount": "1200.00"}, {**PAYMENT, "payee": "Mallory Ltd"}):
            seen = await self.pay(http, target, changed, bound)
            assert seen == _expected(await target.mismatch(PAYMENT_SCOPE, changed)), seen
            assert seen.status == 403 and seen.json()["code"] == "transaction_mismatch"
        bobs = await self.pay(http, target, PAYMENT, bound, BOB)
        assert bobs == _expected(await target.refusal(BOB, PAYMENT_SCOPE, PAYMENT))
        unbound = await target.mint(ALICE, PAYMENT_SCOPE, 300)
        refused = _expected(await target.refusal(ALICE, PAYMENT_SCOPE, PAYMENT))
        assert await self.pay(http, target, PAYMENT, unbound) == refused
        unreadable = await self.pay(http, target, b"amount=120.00&payee=ACME", bound)
        assert unreadable == _expected(target.unreadable_details_expected), unreadable
        assert unreadable.json()["code"] == "invalid_transaction"
        await self.assert_paid(http, target, PAYMENT, bound)  # none of the refusals spent it

    async def test_transaction_reordered(self, target: ProtectedTarget, http: aiohttp.ClientSession) -> None:
        bound = await target.mint(ALICE, PAYMENT_SCOPE, 300, transaction=PAYMENT)
        reordered = b'{ "reference": 120.0, "payee": "ACME Ltd",\n  "currency": "EUR", "amount": "120.00" }'
        seen = await self.pay(http, target, reordered, bound)
        assert seen.status == 200, seen
        assert seen.json()["transaction"] == PAYMENT

    async def test_transaction_concurrent(self, target: ProtectedTarget, http: aiohttp.ClientSession) -> None:
        bound = await target.mint(ALICE, PAYMENT_SCOPE, 300, transaction=PAYMENT)
        answers = await asyncio.gather(*(self.pay(http, target, PAYMENT, bound) for _ in range(CONCURRENT_REQUESTS)))
        assert sorted(a.status for a in answers) == [200] + [401] * (CONCURRENT_REQUESTS - 1)
        refused = _expected(await target.refusal(ALICE, PAYMENT_SCOPE, PAYMENT))
        assert all(a == refused for a in answers if a.status == 401)


# --- the table -------------------------------------------------------------------------------

#: (adapter, case) -> "pass" / "FAIL" / "skip", filled by :func:`pytest_runtest_logreport`.
OUTCOMES: dict[tuple[str, str], str] = {}
_PRINTED: list[bool] = []


def conformance_table(outcomes: dict[tuple[str, str], str] | None = None) -> str:
    """The adapter x case table of ``outcomes`` (default: this run's)."""
    outcomes = OUTCOMES if outcomes is None else outcomes
    adapters = sorted({a for a, _ in outcomes}, key=lambda a: (a != "aiohttp", a))
    width = max([len("adapter"), *map(len, adapters)])
    header = "adapter".ljust(width) + " | " + " | ".join(CASES)
    lines = [header, "-" * len(header)]
    for adapter in adapters:
        cells = [outcomes.get((adapter, case), "-").center(len(case)) for case in CASES]
        lines.append(adapter.ljust(width) + " | " + " | ".join(cells))
    return "\n".join(lines)


def _case_of(item_name: str) -> str | None:
    name = item_name.split("[", 1)[0].removeprefix("test_")
    return name if name in CASES else None


def record(nodeid: str, adapter: str, when: str, outcome: str) -> None:
    case = _case_of(nodeid.rsplit("::", 1)[-1])
    if case is None:
        return
    key = (adapter, case)
    if outcome == "failed":
        OUTCOMES[key] = "FAIL"
    elif when == "call" and outcome == "passed":
        OUTCOMES.setdefault(key, "pass")
    elif outcome == "skipped":
        OUTCOMES.setdefault(key, "skip")


_ADAPTER_OF: dict[str, str] = {}


def pytest_runtest_setup(item: Any) -> None:
    """Note which adapter a suite test checks (import this into a ``conftest.py``)."""
    cls = getattr(item, "cls", None)
    if cls is not None and isinstance(cls, type) and issubclass(cls, ProtectedRouteSuite):
        _ADAPTER_OF[item.nodeid] = cls.adapter


def pytest_runtest_logreport(report: Any) -> None:
    """Collect suite outcomes (import this into a ``conftest.py``)."""
    adapter = _ADAPTER_OF.get(report.nodeid)
    if adapter is not None:
        record(report.nodeid, adapter, report.when, report.outcome)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the conformance table once, when suite tests ran (import into a ``conftest.py``)."""
    if OUTCOMES and not _PRINTED:
        _PRINTED.append(True)
        terminalreporter.section("protected-route conformance (adapter x case)")
        terminalreporter.write_line(conformance_table())
