"""The HTTP layer of the client: one typed call per stepup route.

:class:`StepUpApi` knows URLs, headers, JSON and problem answers, and nothing about methods or
prompts. Answers are read with :func:`lenient`, which ignores members a newer server may add.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import aiohttp
import attrs

from ..errors import ServerError
from ..models import ChallengeState, CheckResult, CredentialView, EnrollmentStart, IssuedToken, MethodInfo
from ..serialization import camel, structure
from .problems import error_from_problem

T = TypeVar("T")

#: Header that carries the elevated access token to a protected route.
ELEVATED_TOKEN_HEADER = "X-Elevated-Access-Token"


def _attrs_class_in(hint: Any) -> type[Any] | None:
    """The attrs class a field holds, alone or in an Optional or a tuple/list, else None."""
    if attrs.has(hint):
        return hint
    for arg in get_args(hint):
        if arg is not type(None) and arg is not Ellipsis:
            found = _attrs_class_in(arg)
            if found is not None:
                return found
    return None


def _known_fields(cls: type[Any], data: Any) -> Any:
    """``data`` without the members ``cls`` does not know, at every depth."""
    if not isinstance(data, dict):
        return data
    hints = get_type_hints(cls)
    cleaned: dict[str, Any] = {}
    for field in attrs.fields(cls):
        key = camel(field.name)
        if key not in data:
            continue
        value = data[key]
        inner = _attrs_class_in(hints.get(field.name))
        if inner is not None and isinstance(value, list) and get_origin(hints.get(field.name)) is not None:
            value = [_known_fields(inner, item) for item in value]
        elif inner is not None:
            value = _known_fields(inner, value)
        cleaned[key] = value
    return cleaned


def lenient(data: Any, cls: type[T]) -> T:
    """Structure a server answer as ``cls``, ignoring members this client does not know (in
    nested attrs classes too), so the client keeps working against a newer server."""
    return structure(_known_fields(cls, data), cls)


class StepUpApi:
    """Calls the stepup routes of one server as one session.

    A problem answer is raised as its stepup error; an unreachable server or a body that is not
    JSON is a :class:`ServerError`. ``busy`` wraps every call (the client's ``is_loading``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        prefix: str = "/stepup",
        session_token: str | None = None,
        http: aiohttp.ClientSession | None = None,
        headers: Mapping[str, str] | None = None,
        busy: Callable[[Awaitable[Any]], Awaitable[Any]] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.session_token = session_token
        self._http = http
        self._owns_http = http is None
        self._headers = dict(headers or {})
        self._busy = busy

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> StepUpApi:
        self.session()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None and self._owns_http:
            await self._http.close()
        self._http = None

    def session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
            self._owns_http = True
        return self._http

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def base_headers(self) -> dict[str, str]:
        headers = dict(self._headers)
        if self.session_token is not None:
            headers["Authorization"] = f"Bearer {self.session_token}"
        return headers

    # --- one call -----------------------------------------------------------------------

    async def call(self, verb: str, path: str, body: Any = None, *, headers: Mapping[str, str] | None = None) -> Any:
        """Call a stepup route (``path`` below the prefix) and return its JSON answer."""
        work = self._call(verb, path, body, headers)
        return await (self._busy(work) if self._busy is not None else work)

    async def _call(self, verb: str, path: str, body: Any, extra: Mapping[str, str] | None) -> Any:
        url = self.url(self.prefix + path)
        headers = self.base_headers()
        headers["Accept"] = "application/json"
        headers.update(extra or {})
        try:
            async with self.session().request(verb, url, json=body, headers=headers) as resp:
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

    # --- the routes ---------------------------------------------------------------------

    async def check(self, scope: str, token: str | None = None) -> CheckResult:
        """``POST /check``; ``token`` is only looked at (a single-use token stays valid)."""
        headers = {ELEVATED_TOKEN_HEADER: token} if token else {}
        return lenient(await self.call("POST", "/check", {"scope": scope}, headers=headers), CheckResult)

    async def methods(self) -> list[MethodInfo]:
        """``GET /methods``."""
        data = await self.call("GET", "/methods")
        items = data.get("methods", data) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ServerError("the step-up server's method list is not a list")
        return [lenient(item, MethodInfo) for item in items]

    async def begin(
        self,
        method: str,
        scopes: Sequence[str],
        *,
        credential_id: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /challenges``: the challenge as the server sent it (method data included)."""
        body: dict[str, Any] = {"method": method, "requestedScopes": list(scopes)}
        if credential_id is not None:
            body["credentialId"] = credential_id
        if params:
            body["params"] = dict(params)
        data = await self.call("POST", "/challenges", body)
        if not isinstance(data, dict) or not isinstance(data.get("challengeId"), str):
            raise ServerError("the step-up server's challenge has no challengeId")
        return data

    async def verify(
        self,
        method: str,
        response: Mapping[str, Any],
        scopes: Sequence[str],
        *,
        challenge_id: str | None = None,
        credential_id: str | None = None,
    ) -> IssuedToken:
        """``POST /verify``."""
        body: dict[str, Any] = {"method": method, "response": dict(response), "requestedScopes": list(scopes)}
        if challenge_id is not None:
            body["challengeId"] = challenge_id
        if credential_id is not None:
            body["credentialId"] = credential_id
        return lenient(await self.call("POST", "/verify", body), IssuedToken)

    async def challenge_state(self, challenge_id: str) -> ChallengeState:
        """``GET /challenges/{id}``: a challenge or enrolment completed elsewhere."""
        return lenient(await self.call("GET", f"/challenges/{challenge_id}"), ChallengeState)

    async def credentials(self) -> list[CredentialView]:
        """``GET /credentials``."""
        data = await self.call("GET", "/credentials")
        items = data.get("credentials", data) if isinstance(data, dict) else data
        return [lenient(item, CredentialView) for item in items or []]

    async def begin_enrollment(
        self, method: str, params: Mapping[str, Any], *, alias: str | None = None, link_token: str | None = None
    ) -> EnrollmentStart:
        """``POST /enrollments``."""
        body: dict[str, Any] = {"method": method, "params": dict(params)}
        if alias is not None:
            body["alias"] = alias
        data = await self.call("POST", "/enrollments", body, headers=_token_header(link_token))
        return lenient(data, EnrollmentStart)

    async def complete_enrollment(
        self, enrollment_id: str, response: Mapping[str, Any], *, link_token: str | None = None
    ) -> CredentialView:
        """``POST /enrollments/{id}``."""
        data = await self.call(
            "POST", f"/enrollments/{enrollment_id}", {"response": dict(response)}, headers=_token_header(link_token)
        )
        return lenient(data, CredentialView)

    async def delete_credential(self, credential_id: str, *, unlink_token: str | None = None) -> list[CredentialView]:
        """``DELETE /credentials/{id}``: the credentials that went with it (``alsoRemoved``), usually none."""
        data = await self.call("DELETE", f"/credentials/{credential_id}", headers=_token_header(unlink_token))
        removed = data.get("alsoRemoved") if isinstance(data, dict) else None
        return [lenient(item, CredentialView) for item in removed or []]

    async def revoke_grants(self) -> int:
        """``DELETE /grants``: how many tokens the server revoked."""
        data = await self.call("DELETE", "/grants")
        revoked = data.get("revoked", 0) if isinstance(data, dict) else 0
        return int(revoked) if isinstance(revoked, int) else 0


def _token_header(token: str | None) -> dict[str, str]:
    return {ELEVATED_TOKEN_HEADER: token} if token else {}
