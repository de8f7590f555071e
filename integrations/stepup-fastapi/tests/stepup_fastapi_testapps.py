"""The applications the conformance suite runs against: a FastAPI one guarded with the
``RequireScope`` dependency and a Starlette one guarded with the ``requires_scope`` decorator,
each with the suite's protected routes and its transaction-bound payment route."""

# No "from __future__ import annotations": FastAPI reads these annotations at run time,
# and the dependencies in them name local variables.
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from stepup_fastapi import Elevation, RequireScope, StepUp, requires_scope

from stepup_core.testing.protected import PROTECTED_ROUTES, TRANSACTION_ROUTES, handler_body, json_body_details


async def payment_details(request: Request) -> Any:
    """The transaction builder: the JSON body is the payment's details."""
    return json_body_details(await request.body())


def fastapi_app(stepup: StepUp) -> FastAPI:
    app = FastAPI()
    stepup.install(app)
    for path, scope in PROTECTED_ROUTES.items():

        def add(path: str = path, scope: str = scope) -> None:
            @app.post(path)
            async def handler(elevation: Annotated[Elevation, Depends(RequireScope(scope))]) -> dict[str, Any]:
                return handler_body(elevation.principal, elevation.grant, scope)

        add()
    for path, scope in TRANSACTION_ROUTES.items():

        def add_bound(path: str = path, scope: str = scope) -> None:
            guard = RequireScope(scope, transaction=payment_details)

            @app.post(path)
            async def pay(elevation: Annotated[Elevation, Depends(guard)]) -> dict[str, Any]:
                return handler_body(elevation.principal, elevation.grant, scope, elevation.transaction)

        add_bound()
    return app


def starlette_app(stepup: StepUp) -> Starlette:
    routes = []
    for path, scope in PROTECTED_ROUTES.items():

        @requires_scope(scope)
        async def endpoint(request: Request, scope: str = scope) -> JSONResponse:
            elevation = request.state.stepup
            return JSONResponse(handler_body(elevation.principal, elevation.grant, scope))

        routes.append(Route(path, endpoint, methods=["POST"]))
    for path, scope in TRANSACTION_ROUTES.items():

        @requires_scope(scope, transaction=payment_details)
        async def pay(request: Request, scope: str = scope) -> JSONResponse:
            elevation = request.state.stepup
            return JSONResponse(handler_body(elevation.principal, elevation.grant, scope, elevation.transaction))

        routes.append(Route(path, pay, methods=["POST"]))
    app = Starlette(routes=routes)
    stepup.install(app)
    return app
