"""The application's own routes, called through the client: the jar's token goes along, and a
step-up refusal (RFC 9470) may be answered by a prompt and one retry."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import attrs
from multidict import CIMultiDictProxy

from ..errors import ServerError, StepUpError
from .api import ELEVATED_TOKEN_HEADER, StepUpApi
from .jar import TokenJar
from .problems import error_from_problem

STEP_UP_ERROR = "insufficient_user_authentication"

_AUTH_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_www_authenticate(value: str) -> dict[str, str]:
    """The parameters of a ``Bearer`` challenge (``error``, ``scope``...), or {} for another scheme."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return {}
    return {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)) for m in _AUTH_PARAM.finditer(rest)
    }


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


#: Answers a refusal: step up for the scope the refusal names, with the check it carries.
StepUpOnRefusal = Callable[[AppResponse, str], Awaitable[Any]]


@attrs.frozen
class AppRequest:
    """One request to the application: ``scope`` names the step-up scope the route needs;
    ``options`` reach aiohttp's ``request`` (``json=``, ``data=``...)."""

    method: str
    url: str
    scope: str | None = None
    headers: Mapping[str, str] | None = None
    options: Mapping[str, Any] = attrs.field(factory=dict)


class AppRoutes:
    """Requests to the application's routes on behalf of the client."""

    def __init__(self, api: StepUpApi, jar: TokenJar, busy: Callable[[Awaitable[Any]], Awaitable[Any]]) -> None:
        self.api = api
        self.jar = jar
        self._busy = busy

    async def request(self, request: AppRequest, on_refusal: StepUpOnRefusal | None) -> AppResponse:
        """Send once; with ``on_refusal``, a step-up refusal is answered by it and the request
        is sent once more with the token it earned."""
        response = await self.send(request)
        challenge = response.step_up_challenge()
        if on_refusal is None or challenge is None:
            return response
        needed = challenge.get("scope") or request.scope
        if not needed:
            return response
        await on_refusal(response, needed)
        return await self.send(attrs.evolve(request, scope=needed))

    async def send(self, request: AppRequest) -> AppResponse:
        """One request; the jar's token for its scope goes along (a single-use one leaves the
        jar) and is dropped when the application refuses it."""
        all_headers = self.api.base_headers()
        all_headers.update(request.headers or {})
        token = self.jar.take(request.scope) if request.scope else None
        if token is not None:
            all_headers[ELEVATED_TOKEN_HEADER] = token.elevated_access_token
        target = self.api.url(request.url)
        method, options = request.method, request.options

        async def call() -> AppResponse:
            try:
                async with self.api.session().request(method, target, headers=all_headers, **options) as resp:
                    return AppResponse(
                        status=resp.status,
                        headers=resp.headers,
                        body=await resp.read(),
                        token_sent=token.elevated_access_token if token else None,
                    )
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise ServerError(f"could not reach {target}: {exc or type(exc).__name__}") from exc

        response: AppResponse = await self._busy(call())
        if token is not None and response.step_up_challenge() is not None:
            self.jar.discard(token.elevated_access_token)
        return response
