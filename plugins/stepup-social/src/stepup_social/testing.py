"""Test support: identity providers on loopback and drivers for their sign-in pages.

- :class:`LoopbackProvider` serves a small, strict OpenID Connect provider (or, with
  ``kind="oauth2"``, a GitHub-style OAuth 2.0 provider with a user-info endpoint) from an aiohttp
  app on 127.0.0.1. It enforces PKCE S256, single-use codes, redirect URI and client
  authentication, signs ID tokens with joserfc, and lets a test bend one thing at a time: the
  ``auth_time``, the signing key, any claim, an error at the authorization step.
- :func:`sign_in_at_mock_provider` drives the sign-in form of ``oidc-provider-mock`` (a
  test OpenID provider from PyPI) for a chosen subject and returns the callback's query.

Imported only by tests and demos; the plugin never imports it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import aiohttp
import attrs
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet


def callback_query(location: str) -> dict[str, str]:
    """The query parameters of a redirect ``Location``."""
    return dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))


async def _mock_provider_redirect(session: aiohttp.ClientSession, url: str, subject: str | None, deny: bool) -> str:
    async with session.get(url, allow_redirects=False) as page:
        text = await page.text()
        if page.status != 200 or 'name="sub"' not in text:
            raise AssertionError(f"the provider did not show its sign-in form: HTTP {page.status}: {text[:300]}")
    form = {"action": "deny"} if deny else {"sub": subject or ""}
    async with session.post(url, data=form, allow_redirects=False) as answer:
        if answer.status not in (301, 302, 303):
            body = await answer.text()
            raise AssertionError(f"the provider did not redirect: HTTP {answer.status}: {body[:300]}")
        return answer.headers["Location"]


async def sign_in_at_mock_provider(url: str, subject: str | None, *, deny: bool = False) -> dict[str, str]:
    """Submit ``oidc-provider-mock``'s authorization form as ``subject`` (or press Deny).

    Returns the query of the provider's redirect to the callback URL (``code`` and ``state``,
    or ``error``).
    """
    async with aiohttp.ClientSession() as session:
        return callback_query(await _mock_provider_redirect(session, url, subject, deny))


@attrs.frozen
class CallbackPage:
    """What the browser shows after the provider sent it back to the callback route."""

    status: int
    content_type: str
    text: str


async def browse_mock_provider(url: str, subject: str | None, *, deny: bool = False) -> CallbackPage:
    """Act as the person's browser: sign in at ``oidc-provider-mock`` as ``subject`` and follow
    the redirect to the stepup server's callback route, as a browser would."""
    async with aiohttp.ClientSession() as session:
        location = await _mock_provider_redirect(session, url, subject, deny)
        async with session.get(location, headers={"Accept": "text/html"}, allow_redirects=False) as page:
            return CallbackPage(page.status, page.content_type, await page.text())


async def follow_authorization(url: str) -> dict[str, str]:
    """GET an authorization URL that redirects at once (:class:`LoopbackProvider`); the callback query."""
    async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False) as answer:
        if answer.status not in (301, 302, 303):
            raise AssertionError(f"the provider did not redirect: HTTP {answer.status}: {(await answer.text())[:300]}")
        return callback_query(answer.headers["Location"])


@attrs.define
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    subject: str
    scope: str


@attrs.define
class LoopbackProvider:
    """A strict identity provider on loopback, bendable one property at a time.

    ``await provider.start()`` then use ``provider.issuer`` (``kind="oidc"``) or the
    ``*_endpoint`` properties (``kind="oauth2"``). Whoever follows the authorization URL is
    signed in as ``subject`` at once (no form) unless ``authorize_error`` is set.
    """

    kind: str = "oidc"
    client_id: str = "stepup-test-client"
    client_secret: str = "stepup-test-secret"
    #: ``client_secret_basic`` or ``client_secret_post``: the only one accepted.
    token_endpoint_auth: str = "client_secret_basic"
    subject: str = "alice"
    #: Extra ID-token claims or user-info members; a key set to None is removed.
    claims: dict[str, Any] = attrs.field(factory=dict)
    #: ``auth_time`` of the sign-in: "now" (the default), None (claim left out) or a number.
    auth_time: float | str | None = "now"
    #: Sign ID tokens with this key instead of the published one.
    signing_key: ECKey | None = None
    #: Turn the ID-token claims into the token sent, instead of signing them (``alg: none``...).
    raw_id_token: Callable[[dict[str, Any]], str] | None = None
    #: Answer the authorization step with this error (``access_denied``).
    authorize_error: str | None = None
    #: User info of the oauth2 kind; ``id`` defaults to a number derived from ``subject``.
    userinfo: dict[str, Any] = attrs.field(factory=dict)
    clock: Callable[[], float] = time.time
    key: ECKey = attrs.field(factory=lambda: ECKey.generate_key("P-256", auto_kid=True))
    authorize_requests: list[dict[str, str]] = attrs.field(factory=list)
    token_requests: list[dict[str, str]] = attrs.field(factory=list)
    token_refusals: list[str] = attrs.field(factory=list)
    discovery_fetches: int = 0
    jwks_fetches: int = 0
    _grants: dict[str, _Grant] = attrs.field(factory=dict)
    _access_tokens: dict[str, str] = attrs.field(factory=dict)
    _runner: web.AppRunner | None = None
    _base: str = ""

    @property
    def issuer(self) -> str:
        return self._base

    @property
    def authorization_endpoint(self) -> str:
        return f"{self._base}/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self._base}/token"

    @property
    def userinfo_endpoint(self) -> str:
        return f"{self._base}/user"

    def provider_config(self, **extra: Any) -> dict[str, Any]:
        """A ``[plugins.social.providers.<name>]`` table for this provider."""
        table: dict[str, Any] = {
            "kind": self.kind,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "token_endpoint_auth": self.token_endpoint_auth,
        }
        if self.kind == "oidc":
            table["issuer"] = self.issuer
        else:
            table.update(
                authorization_endpoint=self.authorization_endpoint,
                token_endpoint=self.token_endpoint,
                userinfo_endpoint=self.userinfo_endpoint,
                subject_field="id",
                scopes=["read:user"],
            )
        table.update(extra)
        return table

    async def start(self) -> LoopbackProvider:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_get("/user", self._user)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._base = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- endpoints ---------------------------------------------------------------------

    async def _discovery(self, request: web.Request) -> web.Response:
        self.discovery_fetches += 1
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": self.authorization_endpoint,
                "token_endpoint": self.token_endpoint,
                "userinfo_endpoint": self.userinfo_endpoint,
                "jwks_uri": f"{self._base}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": [self.token_endpoint_auth],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_fetches += 1
        return web.json_response(KeySet([self.key]).as_dict(private=False))

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.authorize_requests.append(query)
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or not redirect_uri.startswith(("http://", "https://")):
            return web.Response(status=400, text="unknown client or bad redirect_uri")
        back: dict[str, str] = {"state": query.get("state", "")}
        if self.authorize_error:
            back["error"] = self.authorize_error
        else:
            code = secrets.token_urlsafe(24)
            self._grants[code] = _Grant(
                client_id=self.client_id,
                redirect_uri=redirect_uri,
                code_challenge=query.get("code_challenge"),
                code_challenge_method=query.get("code_challenge_method"),
                nonce=query.get("nonce"),
                subject=self.subject,
                scope=query.get("scope", ""),
            )
            back["code"] = code
        separator = "&" if urlsplit(redirect_uri).query else "?"
        raise web.HTTPFound(redirect_uri + separator + urlencode(back))

    def _client_authenticated(self, request: web.Request, form: Mapping[str, str]) -> bool:
        header = request.headers.get("Authorization", "")
        if self.token_endpoint_auth == "client_secret_basic":
            if not header.startswith("Basic ") or "client_secret" in form:
                return False
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return unquote(user) == self.client_id and unquote(password) == self.client_secret
        return (
            not header and form.get("client_id") == self.client_id and form.get("client_secret") == self.client_secret
        )

    def _refuse(self, error: str, status: int = 400) -> web.Response:
        self.token_refusals.append(error)
        return web.json_response({"error": error}, status=status)

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append(form)
        if not self._client_authenticated(request, form):
            return self._refuse("invalid_client", 401)
        if form.get("grant_type") != "authorization_code":
            return self._refuse("unsupported_grant_type")
        grant = self._grants.pop(form.get("code", ""), None)  # single use
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return self._refuse("invalid_grant")
        verifier = form.get("code_verifier", "")
        expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if grant.code_challenge_method != "S256" or grant.code_challenge != expected:
            return self._refuse("invalid_grant")
        access_token = secrets.token_urlsafe(24)
        self._access_tokens[access_token] = grant.subject
        answer: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer", "expires_in": 3600}
        if self.kind == "oidc":
            answer["id_token"] = self._id_token(grant)
        if self.kind == "oauth2" and "application/json" not in request.headers.get("Accept", ""):
            return web.Response(text=urlencode(answer), content_type="application/x-www-form-urlencoded")
        return web.json_response(answer)

    def _id_token(self, grant: _Grant) -> str:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": grant.subject,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        if self.auth_time == "now":
            claims["auth_time"] = now
        elif self.auth_time is not None:
            claims["auth_time"] = self.auth_time
        for name, value in self.claims.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        if self.raw_id_token is not None:
            return self.raw_id_token(claims)
        key = self.signing_key or self.key
        return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)

    async def _user(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        subject = self._access_tokens.get(header[7:]) if header.startswith("Bearer ") else None
        if subject is None:
            return web.json_response({"message": "Bad credentials"}, status=401)
        info: dict[str, Any] = {"id": github_style_id(subject), "login": subject}
        info.update(self.userinfo)
        return web.json_response({k: v for k, v in info.items() if v is not None})


def github_style_id(subject: str) -> int:
    """A stable numeric account id for ``subject`` (GitHub user ids are integers)."""
    return int.from_bytes(hashlib.sha256(subject.encode()).digest()[:4], "big")


__all__ = [
    "CallbackPage",
    "LoopbackProvider",
    "browse_mock_provider",
    "callback_query",
    "follow_authorization",
    "github_style_id",
    "sign_in_at_mock_provider",
]
