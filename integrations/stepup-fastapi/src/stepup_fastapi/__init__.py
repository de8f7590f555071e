"""stepup for FastAPI and Starlette.

::

    from fastapi import Depends, FastAPI
    from stepup_fastapi import Elevation, RequireScope, StepUp

    stepup = StepUp(identify, config=load_config("stepup.toml"))   # or service=...
    app = FastAPI(lifespan=stepup.lifespan)                         # opens and closes the service
    stepup.install(app)                                             # the protocol under /stepup

    @app.post("/wallet/export")
    async def export(elevation: Elevation = Depends(RequireScope("wallet:export"))):
        ...  # elevation.grant: the grant that let the request through (spent if single-use)

- ``identify(request)`` is the application's: it receives Starlette's ``Request`` (on the
  protocol's routes too), and may be a coroutine function or a plain function.
- :class:`RequireScope` is a dependency: it declares ``X-Elevated-Access-Token`` in FastAPI's
  OpenAPI document (the ``elevatedToken`` API-key scheme, as stepup's own document names it),
  and hands the handler an :class:`~stepup_core.server.guard.Elevation`: the caller and the
  grant. Without a valid token it raises :class:`StepUpRefused`, which ``install`` answers with
  exactly what every stepup guard answers: the RFC 9470 401 and its problem body, 503 when the
  store is down.
- :func:`requires_scope` does the same for a plain Starlette endpoint ``(request) -> Response``.
- ``gate=RemoteGuard(...)`` (on :class:`StepUp` or per dependency) asks a ``stepup serve``
  beside the application instead of a service with the store at hand.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Request
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response

from stepup_core.errors import ConfigError
from stepup_core.scopes import validate_scope_syntax
from stepup_core.server.asgi import AsgiRequest, StepUpASGI
from stepup_core.server.guard import Elevation, Gate, ServiceGate, guard, refusal, token_from
from stepup_core.server.http import TOKEN_HEADER, Answer, AnyIdentify, normalise_prefix

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.types import Receive, Scope, Send

    from stepup_core.config import StepUpConfig
    from stepup_core.service import StepUpService

__all__ = [
    "STEP_UP_RESPONSES",
    "Elevation",
    "RequireScope",
    "StepUp",
    "StepUpRefused",
    "requires_scope",
    "stepup_of",
]

F = TypeVar("F", bound=Callable[..., Awaitable[Response]])

#: The ``X-Elevated-Access-Token`` header as FastAPI's OpenAPI shows it: the ``elevatedToken``
#: API-key scheme, as in stepup's own document. Optional: without it the answer is the 401.
elevated_token_header = APIKeyHeader(
    name=TOKEN_HEADER,
    scheme_name="elevatedToken",
    description="An elevated access token (`sut_...`) from stepup's POST /verify.",
    auto_error=False,
)

_PROBLEM = {"application/problem+json": {"schema": {"type": "object", "additionalProperties": True}}}
#: ``responses=`` for a guarded route, so FastAPI's document lists the guard's answers too.
STEP_UP_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "Step-up required: RFC 9470 challenge in WWW-Authenticate, the check in the problem body",
        "content": _PROBLEM,
    },
    503: {"description": "The step-up store cannot be reached: never a grant", "content": _PROBLEM},
}


class StepUpRefused(HTTPException):
    """A guard's refusal: :attr:`answer` is what to send. Installed applications answer it as it
    is; without the handler Starlette still answers its status and ``WWW-Authenticate``."""

    def __init__(self, answer: Answer) -> None:
        headers = {k: v for k, v in answer.headers if k.lower() != "content-type"}
        super().__init__(status_code=answer.status, detail=answer.json(), headers=headers)
        self.answer = answer


def answer_response(answer: Answer) -> Response:
    """A stepup :class:`~stepup_core.server.http.Answer` as a Starlette response, byte for byte."""
    return Response(content=answer.body, status_code=answer.status, headers=dict(answer.headers))


async def _refused(request: StarletteRequest, exc: Exception) -> Response:
    assert isinstance(exc, StepUpRefused)
    return answer_response(exc.answer)


class StepUp:
    """stepup in one Starlette or FastAPI application.

    :param identify: ``(request) -> Principal | None``, given Starlette's request.
    :param service: a ready :class:`~stepup_core.service.StepUpService` (its owner closes it)...
    :param config: ...or the configuration :meth:`lifespan` opens one from.
    :param gate: who decides for the guards (default: the service); a
        :class:`~stepup_core.remote.RemoteGuard` needs no service at all.
    :param prefix: where :meth:`install` mounts the protocol (default ``server.prefix``).
    """

    def __init__(
        self,
        identify: AnyIdentify,
        *,
        service: StepUpService | None = None,
        config: StepUpConfig | None = None,
        gate: Gate | None = None,
        prefix: str | None = None,
    ) -> None:
        self.identify = identify
        self.config = config if config is not None else (service.config if service is not None else None)
        self._gate = gate
        chosen = prefix or (self.config.server.prefix if self.config is not None else "/stepup")
        self.prefix = normalise_prefix(chosen)
        self._asgi: StepUpASGI | None = None
        self._service_gate: ServiceGate | None = None
        self.service: StepUpService | None = None
        if service is not None:
            self.attach(service)

    def attach(self, service: StepUpService) -> None:
        """Serve and guard with ``service`` (``lifespan`` does this for a configured one)."""
        self.service = service
        self._service_gate = ServiceGate(service)
        self._asgi = StepUpASGI(
            service,
            self.identify,
            prefix=self.prefix,
            identify_argument=lambda request: StarletteRequest(_scope_of(request)),
        )

    @property
    def gate(self) -> Gate:
        if self._gate is not None:
            return self._gate
        if self._service_gate is None:
            raise ConfigError("stepup has no service yet: pass service=, or run the app with lifespan=stepup.lifespan")
        return self._service_gate

    @asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """Open the service from ``config`` in the server's event loop and close it at shutdown
        (``FastAPI(lifespan=stepup.lifespan)``). A service given to the constructor is left to
        its owner."""
        if self.service is not None or self.config is None:
            yield
            return
        from stepup_core.service import StepUpService

        service = await StepUpService.create(self.config)
        self.attach(service)
        try:
            yield
        finally:
            self.service = None
            self._asgi = None
            self._service_gate = None
            await service.close()

    def install(self, app: Starlette) -> None:
        """Mount the protocol at the prefix, answer :class:`StepUpRefused` as stepup does, and
        make this object the one :class:`RequireScope` finds (``app.state.stepup``)."""
        app.state.stepup = self
        app.add_exception_handler(StepUpRefused, _refused)
        if self._gate is None or self.service is not None or self.config is not None:
            app.mount(self.prefix, app=self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The protocol's ASGI application (what ``install`` mounts)."""
        if self._asgi is None:
            from stepup_core.errors import StoreUnavailable
            from stepup_core.server.asgi import send_answer
            from stepup_core.server.problems import problem_answer

            if scope["type"] == "http":
                await send_answer(send, problem_answer(StoreUnavailable("stepup has not started")))
            return
        await self._asgi(scope, receive, send)

    async def decide(self, request: StarletteRequest, scope: str, gate: Gate | None = None) -> Elevation | Answer:
        """The guard's decision for ``request`` (identify, then the gate)."""
        try:
            chosen = gate or self.gate
        except ConfigError as exc:
            return refusal(exc, scope=scope, where=request.scope.get("path", ""))
        where = request.scope.get("path", "")
        return await guard(chosen, scope, self.identify, request, token_from(request.headers), where=where)


def _scope_of(request: Any) -> Any:
    assert isinstance(request, AsgiRequest)
    return request.native_scope


def stepup_of(request: StarletteRequest) -> StepUp:
    """The :class:`StepUp` installed on the application serving ``request``."""
    found = getattr(request.app.state, "stepup", None)
    if not isinstance(found, StepUp):
        raise ConfigError("stepup is not installed on this application: call StepUp(...).install(app)")
    return found


class RequireScope(APIKeyHeader):
    """A FastAPI dependency: the request proceeds only with an elevated access token for ``scope``.

    ``elevation: Elevation = Depends(RequireScope("wallet:export"))`` hands the handler the
    caller and the grant (a single-use token is spent); it is also at ``request.state.stepup``.
    The dependency is itself the ``elevatedToken`` API-key security scheme (the
    ``X-Elevated-Access-Token`` header, optional: without it the answer is the 401), so FastAPI's
    OpenAPI document lists it on the route, at the cost of one dependency, not two.

    :param scope: the scope the route needs (checked for form now, for being declared per request).
    :param gate: who decides for this route (default: the installed :class:`StepUp`'s).
    """

    def __init__(self, scope: str, *, gate: Gate | None = None) -> None:
        super().__init__(
            name=TOKEN_HEADER,
            scheme_name=elevated_token_header.scheme_name,
            description=elevated_token_header.model.description,
            auto_error=False,
        )
        self.scope = validate_scope_syntax(scope)
        self.gate = gate

    def __repr__(self) -> str:
        return f"RequireScope({self.scope!r})"

    async def __call__(self, request: Request) -> Elevation:  # type: ignore[override]
        try:
            stepup = stepup_of(request)
        except ConfigError as exc:
            raise StepUpRefused(refusal(exc, scope=self.scope, where=request.scope.get("path", ""))) from None
        outcome = await stepup.decide(request, self.scope, self.gate)
        if isinstance(outcome, Answer):
            raise StepUpRefused(outcome)
        request.state.stepup = outcome
        return outcome


def requires_scope(scope: str, *, gate: Gate | None = None) -> Callable[[F], F]:
    """Guard a Starlette endpoint ``async (request) -> Response`` like :class:`RequireScope`;
    the elevation is at ``request.state.stepup``."""
    validate_scope_syntax(scope)

    def decorator(endpoint: F) -> F:
        @functools.wraps(endpoint)
        async def guarded(request: StarletteRequest, *args: Any, **kwargs: Any) -> Response:
            try:
                stepup = stepup_of(request)
            except ConfigError as exc:
                return answer_response(refusal(exc, scope=scope, where=request.scope.get("path", "")))
            outcome = await stepup.decide(request, scope, gate)
            if isinstance(outcome, Answer):
                return answer_response(outcome)
            request.state.stepup = outcome
            return await endpoint(request, *args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorator
