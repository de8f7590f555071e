"""The client half: send the person to the provider; the server completes the challenge.

``answer`` opens the challenge's ``authorizationUrl`` with ``open_url`` (a callable, possibly
async, for headless use: a test driver, a device that shows a QR code) or the system web
browser, and returns ``Answer(completed_elsewhere=True)``: the client then polls the challenge
until the provider's callback has completed it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from stepup_core.errors import InvalidResponse, ValidationError

from .verifier import METHOD, PACKAGE

if TYPE_CHECKING:  # the client package loads aiohttp: keep registration light
    from stepup_core.client.method import Answer, ClientContext


def authorization_url(payload: Mapping[str, Any]) -> str:
    """The URL in a ``POST /challenges`` or ``POST /enrollments`` body (``data.authorizationUrl``)."""
    data = payload.get("data")
    url = data.get("authorizationUrl") if isinstance(data, Mapping) else None
    if url is None:
        url = payload.get("authorizationUrl")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise InvalidResponse("the server's answer has no authorization URL", field="data.authorizationUrl")
    return url


async def open_authorization_url(url: str, ctx: ClientContext) -> None:
    opener: Callable[[str], Any] | None = ctx.options.get("open_url")
    if opener is not None:
        result = opener(url)
        if inspect.isawaitable(result):
            await result
        return
    await ctx.prompter.tell(f"Sign in at your provider to continue: {url}")
    import webbrowser

    webbrowser.open(url)


class SocialClientMethod:
    """Registered as ``social``. Options: ``provider`` (for linking), ``open_url``."""

    name = METHOD
    package = PACKAGE

    async def answer(self, challenge: Mapping[str, Any], ctx: ClientContext) -> Answer:
        from stepup_core.client.method import Answer

        await open_authorization_url(authorization_url(challenge), ctx)
        return Answer(completed_elsewhere=True)

    async def enrollment_params(self, ctx: ClientContext) -> Mapping[str, Any]:
        provider = ctx.options.get("provider")
        if not isinstance(provider, str) or not provider:
            raise ValidationError(
                "linking a social account needs provider=<name>",
                [{"path": "params.provider", "message": "required field missing"}],
            )
        return {"provider": provider}

    async def answer_enrollment(self, enrollment: Mapping[str, Any], ctx: ClientContext) -> Mapping[str, Any]:
        await open_authorization_url(authorization_url(enrollment), ctx)
        return {}

    def unattended(self) -> Any | None:
        return None  # a person must sign in at the provider
