"""Sidecar introspection: ``POST {prefix}/introspect`` for applications beside ``stepup serve``.

An application in any language that does not share stepup's store asks the server whether an
elevated access token lets a request through, with RFC 7662 semantics: it sends the token, the
scope the action needs, and the user and session the token must belong to (with, optionally,
the session's sign-in: ``acr``, ``amr``, ``auth_time``); ``consume: true`` spends a single-use
token atomically, exactly as a guard in the application would.

The caller authenticates with a **service credential** (``Authorization: Bearer sis_...``), never
a user's session. The configuration holds only its SHA-256 (``[introspection.clients]``); a
presented credential is hashed and compared in constant time with every configured hash.

The answer holds RFC 7662's ``active``, ``scope``, ``sub``, ``exp``, ``iat``, the session
(``sid``) and ``auth_time``/``acr``/``amr``, stepup's ``method``, ``singleUse`` and ``consumed``,
and ``allow``: whether the guarded action may proceed (a valid token, an accepted sign-in, or a
scope that needs no step-up). When ``allow`` is false, ``challenge`` holds the exact answer a
guard gives: status 401, the headers (``WWW-Authenticate`` per RFC 9470) and the problem body
(as text, to send unchanged).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from .crypto import constant_time_equals
from .errors import InvalidClient, StepUpRequired, ValidationError
from .models import AuditEvent, Grant, Principal
from .serialization import WIRE_NAME

if TYPE_CHECKING:
    from .service import StepUpService

#: Service credentials start with this, so secret scanners can find a leaked one.
CREDENTIAL_PREFIX = "sis_"
MAX_ID_LENGTH = 512


def credential_hash(credential: str) -> str:
    """What ``[introspection.clients]`` holds for a credential: ``sha256:<hex>``. The credential
    carries 256 random bits, so a fast hash is enough to keep it out of the configuration."""
    return "sha256:" + hashlib.sha256(credential.encode("utf-8", "surrogateescape")).hexdigest()


def new_service_credential() -> tuple[str, str]:
    """A new service credential and its hash for the configuration."""
    credential = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
    return credential, credential_hash(credential)


def client_of(authorization: str | None, clients: Mapping[str, str]) -> str:
    """The name of the configured client whose credential ``Authorization: Bearer`` carries, or
    :class:`InvalidClient`. Every configured hash is compared, in constant time."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise InvalidClient("introspection needs a service credential: send Authorization: Bearer sis_...")
    if not clients:
        raise InvalidClient("this server has no introspection clients configured ([introspection.clients])")
    presented = credential_hash(value[:512])
    found: str | None = None
    for name, digest in clients.items():
        if constant_time_equals(digest, presented):
            found = name
    if found is None:
        raise InvalidClient("the service credential is not one of the configured introspection clients")
    return found


# --- the wire ----------------------------------------------------------------------------------


@attrs.frozen
class IntrospectionRequest:
    """Body of ``POST {prefix}/introspect``."""

    #: The scope the guarded action needs.
    scope: str
    #: The user and the session the token must belong to.
    sub: str
    sid: str
    #: The elevated access token the request carried (absent: none).
    token: str | None = None
    #: Spend a single-use token (as a guard does), rather than only look at it.
    consume: bool = False
    #: The session's sign-in, for scopes that accept a fresh sign-in as the step-up.
    acr: str | None = None
    amr: tuple[str, ...] = ()
    auth_time: float | None = attrs.field(default=None, metadata={WIRE_NAME: "auth_time"})

    def principal(self) -> Principal:
        problems = [
            {"path": name, "message": f"must be 1 to {MAX_ID_LENGTH} characters"}
            for name, value in (("sub", self.sub), ("sid", self.sid))
            if not 0 < len(value) <= MAX_ID_LENGTH
        ]
        if problems:
            raise ValidationError("invalid IntrospectionRequest: sub and sid name the token's owner", problems)
        return Principal(self.sub, self.sid, acr=self.acr, amr=self.amr, auth_time=self.auth_time)


@attrs.frozen
class Refusal:
    """The answer a guard gives instead of running the action, to send as it is: the status,
    the headers (``Content-Type``, ``WWW-Authenticate`` per RFC 9470, ``Cache-Control``) and the
    problem+json body as text, so every application answers byte for byte alike."""

    status: int
    headers: dict[str, str]
    body: str


@attrs.frozen
class Introspection:
    """Body of a ``POST {prefix}/introspect`` answer (RFC 7662 members, and stepup's)."""

    #: The token is valid for the scope, user and session (RFC 7662).
    active: bool
    #: The guarded action may proceed: a valid token, an accepted sign-in, or no step-up needed.
    allow: bool
    #: The grant's scopes, space-separated (RFC 7662).
    scope: str | None = None
    sub: str | None = None
    sid: str | None = None
    exp: int | None = None
    iat: int | None = None
    auth_time: int | None = attrs.field(default=None, metadata={WIRE_NAME: "auth_time"})
    acr: str | None = None
    amr: tuple[str, ...] = ()
    #: The method that minted the grant (``sign-in`` for an accepted sign-in).
    method: str | None = None
    single_use: bool | None = None
    #: This call spent the single-use token (or sign-in).
    consumed: bool = False
    #: When ``allow`` is false: what to answer the caller.
    challenge: Refusal | None = None

    @classmethod
    def of(cls, grant: Grant | None, *, allow: bool, consumed: bool = False) -> Introspection:
        if grant is None:
            return cls(active=False, allow=allow)
        auth_time = grant.auth_time if grant.auth_time is not None else grant.issued_at
        return cls(
            active=bool(grant.token_hash),
            allow=allow,
            scope=" ".join(grant.scopes),
            sub=grant.user_id,
            sid=grant.session_id,
            exp=int(grant.expires_at),
            iat=int(grant.issued_at),
            auth_time=int(auth_time),
            acr=grant.acr,
            amr=grant.amr,
            method=grant.method,
            single_use=grant.single_use,
            consumed=consumed,
        )


def refusal_of(error: StepUpRequired) -> Refusal:
    from .server.problems import problem_answer

    answer = problem_answer(error)
    return Refusal(status=answer.status, headers=dict(answer.headers), body=answer.body.decode())


# --- the decision ------------------------------------------------------------------------------


async def introspect(service: StepUpService, request: IntrospectionRequest, *, client: str) -> Introspection:
    """Answer one introspection call by ``client`` (already authenticated).

    With ``consume`` the decision is the guard's own (:meth:`StepUpService.require_scope`): a
    single-use token is spent by this call, of many concurrent calls exactly one. Without it the
    token is only looked at and ``allow`` is the check's answer. A store that cannot be reached
    raises :class:`~stepup_core.errors.StoreUnavailable` (503): never an ``allow``.
    """
    principal = request.principal()
    scope = service.policies.validate(request.scope)
    policy = service.policies.policy_for(scope)
    token = request.token or None
    if request.consume:
        try:
            grant = await service.require_scope(principal, scope, token)
        except StepUpRequired as exc:
            answer = Introspection(active=False, allow=False, challenge=refusal_of(exc))
        else:
            if grant is None:  # the scope needs no step-up: look at the token, spend nothing
                check = service.gate.grant_check(policy)
                seen = await service.tokens.peek(token, principal, scope, check) if token else None
                answer = Introspection.of(seen, allow=True)
            else:
                answer = Introspection.of(grant, allow=True, consumed=grant.single_use)
    else:
        seen = await service.tokens.peek(token, principal, scope, service.gate.grant_check(policy)) if token else None
        result = await service.check(principal, scope, token)
        if result.is_required:
            message = f"step-up authentication is required for {scope}"
            refused = await service.gate.step_up_required(principal, scope, message)
            answer = attrs.evolve(Introspection.of(seen, allow=False), challenge=refusal_of(refused))
        else:
            answer = Introspection.of(seen, allow=True)
    await service.emit(
        AuditEvent(
            type="introspected",
            outcome="success" if answer.allow else "failure",
            at=service.clock.now(),
            user_id=principal.user_id,
            session_id=principal.session_id,
            method=answer.method,
            scopes=(scope,),
            details={"client": client, "consume": request.consume, "active": answer.active},
        )
    )
    return answer
