"""End to end over HTTP: the stepup server on loopback with its real callback route, a real
OpenID provider (oidc-provider-mock), and StepUpClient with the social client half. The
``open_url`` given to the client plays the person's browser: it signs in at the provider and
follows the redirect to the callback route. Every stepup answer the client receives is checked
against stepup's OpenAPI document.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import attrs
import pytest
from stepup_social.testing import CallbackPage, browse_mock_provider

from stepup_core import errors
from stepup_core.models import ChallengeStatus
from stepup_core.testing.stack import StepUpStack


@attrs.define
class Stack(StepUpStack):
    """The stack with a browser for the person (``browser``) and the pages it landed on."""

    pages: list[CallbackPage] = attrs.field(factory=list)

    def browser(self, subject: str) -> Callable[[str], Awaitable[None]]:
        """An ``open_url`` that signs in as ``subject`` and lands on the callback route."""

        async def open_url(url: str) -> None:
            self.pages.append(await browse_mock_provider(url, subject))

        return open_url

    async def poll(self, challenge_id: str) -> dict[str, Any]:
        status, body = await self.api("alice", "GET", f"/challenges/{challenge_id}")
        assert status == 200, body
        return dict(body)


@pytest.fixture
async def stack(make_service: Any, mock_issuer: str) -> AsyncIterator[Stack]:
    service = await make_service(
        {"mock": {"issuer": mock_issuer, "client_id": "stepup-app", "client_secret": "s3cret"}}
    )
    async with Stack.serve(service, users=["alice"]) as stack:
        service.public_url = stack.base_url  # the callback URL the provider sends the browser to
        yield stack


async def link_over_http(stack: Stack, subject: str) -> str:
    client = stack.client()
    start = await client.begin_enrollment("social", {"provider": "mock"})
    await stack.browser(subject)(start.data["authorizationUrl"])
    page = stack.pages[-1]
    assert (page.status, page.content_type) == (200, "text/html")
    assert "Verification complete" in page.text
    assert (await stack.poll(start.enrollment_id))["status"] == ChallengeStatus.VERIFIED.value
    [credential] = await client.list_credentials()
    return credential.id


async def test_verify_social_end_to_end(stack: Stack) -> None:
    credential_id = await link_over_http(stack, "alice-sub")
    client = stack.client()
    check = await client.check_step_up_auth("user:update")
    assert check.is_required and [c.id for c in check.credentials] == [credential_id]

    token = await client.verify_social("mock", open_url=stack.browser("alice-sub"), requested_scopes=["user:update"])
    assert client.state.error is None
    assert token is not None and token.method == "social" and token.scopes == ("user:update",)
    assert "Verification complete" in stack.pages[-1].text
    assert not client.is_step_up_required("user:update")
    assert not (await client.check_step_up_auth("user:update")).is_required


async def test_another_account_fails_in_the_browser_and_in_the_client(stack: Stack) -> None:
    await link_over_http(stack, "alice-sub")
    client = stack.client()
    token = await client.verify_social("mock", open_url=stack.browser("mallory-sub"), requested_scopes=["user:update"])
    assert token is None
    assert client.state.error is not None and "failed" in str(client.state.error)
    page = stack.pages[-1]
    assert page.status == 400 and page.content_type == "text/html"
    assert "verification_failed" in page.text
    assert client.is_step_up_required("user:update")


async def test_a_browser_leg_never_finished_times_out_clearly(stack: Stack) -> None:
    await link_over_http(stack, "alice-sub")
    client = stack.client(poll_interval=0.05)
    opened: list[str] = []
    started = time.monotonic()
    token = await client.verify_social("mock", open_url=opened.append, timeout=0.4, requested_scopes=["user:update"])
    assert token is None and len(opened) == 1
    assert client.state.error is not None and client.state.error.code == "challenge_pending"
    assert "not completed within" in str(client.state.error)
    assert time.monotonic() - started < 5


async def test_a_forged_callback_shows_a_problem_page(stack: Stack) -> None:
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(
            f"{stack.base_url}/stepup/callback/social",
            params={"state": "forged", "code": "whatever"},
            headers={"Accept": "text/html"},
        ) as page,
    ):
        assert page.status == 404 and page.content_type == "text/html"
        assert "challenge_not_found" in await page.text()


async def test_client_enroll_links_an_account_through_the_redirect(stack: Stack) -> None:
    client = stack.client(poll_interval=0.05)
    view = await client.enroll("social", provider="mock", open_url=stack.browser("alice-sub"))
    assert view.method == "social" and view.format.value == "oauth"
    assert [c.id for c in await client.list_credentials()] == [view.id]
    # the account now steps up
    token = await client.verify_social("mock", open_url=stack.browser("alice-sub"), requested_scopes=["user:update"])
    assert token is not None and token.method == "social"


async def test_client_enroll_reports_a_failed_link(stack: Stack) -> None:
    await link_over_http(stack, "alice-sub")
    client = stack.client(poll_interval=0.05)
    await client.verify_social("mock", open_url=stack.browser("alice-sub"), requested_scopes=["credential:link"])
    with pytest.raises(errors.StepUpError) as info:  # the same account cannot be linked twice
        await client.enroll("social", provider="mock", open_url=stack.browser("alice-sub"))
    assert isinstance(info.value, errors.VerificationFailed) and "enrollment_failed" in str(info.value)
    assert len(await client.list_credentials()) == 1
