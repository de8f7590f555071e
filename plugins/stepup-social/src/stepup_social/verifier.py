"""The server half: re-authentication at an OAuth 2.0 / OpenID Connect provider.

``begin`` returns an authorization URL (code flow, PKCE S256, ``state`` =
``challenge.callback_state``, ``nonce``, ``prompt=login``, ``max_age=0``). The person signs in at
the provider, which redirects to the core's callback route; the core finds the challenge by
``state`` and calls ``verify`` with the callback's query. ``verify`` exchanges the code once,
checks the ID token (or, for plain OAuth 2.0, fetches the user info) and compares the provider
account (issuer and subject) with the linked credential's. Linking an account runs the same
flow through ``begin_enrollment`` / ``complete_enrollment``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import attrs

from stepup_core.crypto import constant_time_equals
from stepup_core.errors import (
    EnrollmentFailed,
    InvalidResponse,
    NoEligibleCredential,
    PluginError,
    ReplayDetected,
    ValidationError,
    VerificationFailed,
)
from stepup_core.models import Challenge, Credential, CredentialFormat, Factor, Interaction
from stepup_core.store.base import make_key
from stepup_core.verifier import (
    MAX_ALIAS_LENGTH,
    Attempt,
    BaseVerifier,
    Begun,
    EnrollmentStep,
    NewCredential,
    RateLimit,
    Verification,
    VerifierContext,
)

from .identity import mask, subject_identifier
from .settings import OIDC, ProviderConfig, SocialSettings

if TYPE_CHECKING:
    from .providers import Identity, ProviderClient

METHOD = "social"
PACKAGE = "stepup-social"
_SEAL_PURPOSE = "social:pkce"
_MAX_PARAM = 4096


def _pkce_pair() -> tuple[str, str]:
    """RFC 7636: a 64-character verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _callback_param(params: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = params.get(key)
    if value is None:
        if required:
            raise InvalidResponse(f"the provider's callback has no {key!r} parameter", field=key)
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_PARAM:
        raise InvalidResponse(f"the provider's callback has a malformed {key!r} parameter", field=key)
    return value


@attrs.define
class SocialVerifier(BaseVerifier):
    """Re-authentication (``reauth``) through a configured identity provider."""

    #: The browser half, served at ``{prefix}/methods/social/browser.js`` (docs/browser.md).
    browser_module = files("stepup_social") / "browser.js"

    name = METHOD
    factor = Factor.REAUTH
    formats = (CredentialFormat.OAUTH,)
    interaction = Interaction.REDIRECT
    label = "Social sign-in"
    #: Each challenge costs the provider a discovery fetch at most; bound the churn anyway.
    begin_limits = (RateLimit(limit=10, window=300.0),)

    settings: SocialSettings
    _client: ProviderClient | None = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.challenge_ttl = self.settings.challenge_ttl

    @property
    def client(self) -> ProviderClient:
        if self._client is None:
            from .providers import ProviderClient

            self._client = ProviderClient(self.settings)
        return self._client

    # --- choosing the provider -----------------------------------------------------------

    def _provider(self, params: Mapping[str, Any], credential: Credential | None) -> tuple[str, ProviderConfig]:
        providers = self.settings.providers
        if not providers:
            raise ValidationError(
                "no social providers are configured; add [plugins.social.providers.<name>] to stepup.toml",
                [{"path": "params.provider", "message": "no providers configured"}],
            )
        name = params.get("provider")
        if name is None and credential is not None and credential.type in providers:
            name = credential.type
        if name is None and len(providers) == 1:
            name = next(iter(providers))
        if not isinstance(name, str) or name not in providers:
            known = ", ".join(sorted(providers))
            message = (
                f"unknown provider {str(name)[:64]!r}; configured providers: {known}"
                if name is not None
                else f"say which provider to use in params.provider (one of: {known})"
            )
            raise ValidationError(message, [{"path": "params.provider", "message": message}])
        return name, providers[name]

    @staticmethod
    def _linked(attempt: Attempt, provider: str) -> list[Credential]:
        if attempt.credential is not None and attempt.credential.type == provider:
            return [attempt.credential]
        return [c for c in attempt.candidates if c.type == provider]

    # --- the authorization request -------------------------------------------------------

    async def _authorization(
        self, ctx: VerifierContext, challenge: Challenge, name: str, provider: ProviderConfig
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The authorization URL (public data) and what the callback needs (private state)."""
        if not challenge.callback_state:
            raise PluginError("the social method needs a challenge with a callback state from the core")
        metadata = await self.client.metadata(name, provider, ctx.clock)
        from .providers import add_query

        code_verifier, code_challenge = _pkce_pair()
        redirect_uri = ctx.callback_url(self.name)
        query = {
            **provider.authorize_params,
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": redirect_uri,
            "state": challenge.callback_state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
            "prompt": "login",
        }
        scopes = provider.effective_scopes()
        if scopes:
            query["scope"] = " ".join(scopes)
        nonce = None
        if provider.kind == OIDC:
            nonce = secrets.token_urlsafe(32)
            query["nonce"] = nonce
            query["max_age"] = "0"
        state = {
            "provider": name,
            "issuer": metadata.issuer,
            "redirect_uri": redirect_uri,
            "nonce": nonce,
            "code_verifier": ctx.keys.seal(_SEAL_PURPOSE, code_verifier.encode("ascii")),
        }
        url = add_query(metadata.authorization_endpoint, query)
        return {"authorizationUrl": url, "provider": name}, state

    async def begin(self, ctx: VerifierContext, attempt: Attempt) -> Begun:
        name, provider = self._provider(attempt.params, attempt.credential)
        linked = self._linked(attempt, name)
        if not linked:
            raise NoEligibleCredential(
                f"no {name} account is linked to this user; link one first (scope credential:link)",
                provider=name,
            )
        challenge = attempt.require_challenge()
        data, state = await self._authorization(ctx, challenge, name, provider)
        # The core's default credential may belong to another provider: bind this one's.
        bound = None if challenge.credential_id in {c.id for c in linked} else linked[0].id
        return Begun(data=data, state=state, credential_id=bound)

    # --- the callback ----------------------------------------------------------------------

    async def _identity(self, ctx: VerifierContext, attempt: Attempt) -> tuple[str, ProviderConfig, Identity]:
        """Run the callback through the provider: who signed in, for this challenge."""
        challenge = attempt.challenge
        if challenge is None or "provider" not in challenge.state:
            raise VerificationFailed("this callback does not belong to a social sign-in challenge")
        state = challenge.state
        name = str(state["provider"])
        provider = self.settings.providers.get(name)
        if provider is None:
            raise VerificationFailed(f"provider {name!r} is no longer configured", provider=name)
        params = attempt.params

        returned_state = _callback_param(params, "state", required=True)
        assert returned_state is not None
        if not challenge.callback_state or not constant_time_equals(returned_state, challenge.callback_state):
            raise VerificationFailed("the callback's state does not belong to this challenge", provider=name)
        error = params.get("error")
        if error is not None:
            from .providers import provider_error_code

            error_code = provider_error_code(error)
            raise VerificationFailed(
                f"provider {name!r} did not sign the person in ({error_code})", provider=name, providerError=error_code
            )
        returned_issuer = _callback_param(params, "iss", required=False)
        if returned_issuer is not None and returned_issuer != state.get("issuer"):
            # RFC 9207: the answer came from another provider than the one asked (mix-up).
            raise VerificationFailed(
                f"the callback names issuer {returned_issuer!r}, not provider {name!r}", provider=name
            )
        code = _callback_param(params, "code", required=True)
        assert code is not None

        # An authorization code is exchanged once, whichever challenge it arrives with.
        ledger = make_key("social", "code", name, ctx.keys.keyed_hash("social:code", code))
        if not await ctx.store.add(ledger, challenge.id, ttl=max(self.settings.challenge_ttl, 3600.0)):
            raise ReplayDetected(f"this authorization code from provider {name!r} was already used", provider=name)

        metadata = await self.client.metadata(name, provider, ctx.clock)
        code_verifier = ctx.keys.unseal(_SEAL_PURPOSE, str(state["code_verifier"])).decode("ascii")
        tokens = await self.client.exchange_code(
            name,
            provider,
            metadata,
            code=code,
            redirect_uri=str(state["redirect_uri"]),
            code_verifier=code_verifier,
        )
        if provider.kind == OIDC:
            id_token = tokens.get("id_token")
            if not isinstance(id_token, str) or not id_token:
                raise VerificationFailed(f"provider {name!r} sent no ID token", provider=name)
            identity = await self.client.verify_id_token(
                name,
                provider,
                metadata,
                id_token,
                nonce=str(state["nonce"]),
                not_before=challenge.created_at - self.settings.auth_time_skew,
                clock=ctx.clock,
            )
        else:
            identity = await self._userinfo_identity(name, provider, metadata, tokens)
        return name, provider, identity

    async def _userinfo_identity(
        self, name: str, provider: ProviderConfig, metadata: Any, tokens: Mapping[str, Any]
    ) -> Identity:
        from .providers import Identity

        access_token = tokens.get("access_token")
        token_type = tokens.get("token_type", "bearer")
        if not isinstance(access_token, str) or not access_token:
            raise VerificationFailed(f"provider {name!r} sent no access token", provider=name)
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise VerificationFailed(f"provider {name!r} sent an unsupported token type", provider=name)
        info = await self.client.userinfo(name, metadata, access_token)
        subject = info.get(provider.subject_field)
        if isinstance(subject, bool) or not isinstance(subject, str | int) or subject == "":
            raise VerificationFailed(
                f"the user info of provider {name!r} has no usable {provider.subject_field!r}",
                provider=name,
                claim=provider.subject_field,
            )
        return Identity(issuer=metadata.issuer, subject=str(subject), claims=info)

    async def verify(self, ctx: VerifierContext, attempt: Attempt) -> Verification:
        name, _, identity = await self._identity(ctx, attempt)
        proven = subject_identifier(identity.issuer, identity.subject)
        for credential in self._linked(attempt, name):
            if credential.identifier and constant_time_equals(credential.identifier, proven):
                return Verification(credential_id=credential.id, details={"provider": name})
        raise VerificationFailed(
            f"the {name} account that signed in is not the one linked to this user",
            provider=name,
            reason="subject_mismatch",
        )

    # --- linking an account ----------------------------------------------------------------

    async def begin_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> EnrollmentStep:
        name, provider = self._provider(attempt.params, None)
        data, state = await self._authorization(ctx, attempt.require_challenge(), name, provider)
        return EnrollmentStep(data=data, state=state)

    async def complete_enrollment(self, ctx: VerifierContext, attempt: Attempt) -> NewCredential:
        name, provider, identity = await self._identity(ctx, attempt)
        identifier = subject_identifier(identity.issuer, identity.subject)
        for credential in attempt.candidates:
            if (
                credential.type == name
                and credential.identifier
                and constant_time_equals(credential.identifier, identifier)
            ):
                raise EnrollmentFailed(f"this {name} account is already linked", provider=name)
        display = provider.display_name or name
        hint = next(
            (
                value
                for key in ("email", "preferred_username", "login", "name")
                if isinstance(value := identity.claims.get(key), str) and value
            ),
            None,
        )
        alias = f"{display} ({mask(hint)})" if hint else display
        return NewCredential(
            format=CredentialFormat.OAUTH,
            type=name,
            alias=alias if len(alias) <= MAX_ALIAS_LENGTH else display[:MAX_ALIAS_LENGTH],
            identifier=identifier,
            public={"provider": name, "providerName": display},
        )
