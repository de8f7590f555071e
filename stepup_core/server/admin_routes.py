"""The admin HTTP API: the operations of ``stepup admin`` under ``{prefix}/admin``.

Off unless the application mounts it (``[admin] enabled = true`` with ``stepup serve``, or
``mount(..., admin_identify=...)``). Callers are identified by the admin ``identify`` alone: the
application's user sessions are never consulted here, so a user's session cannot reach these
routes, and an operator token reaches nothing else. The principal's ``user_id`` names the
operator. Every action (reading included) and every refused caller is audited.
"""

from __future__ import annotations

import inspect

from ..admin import Admin, GrantsRevoked, MfaReset, Operator, Unlocked, UserReport
from ..errors import Unauthenticated
from ..models import AuditEvent, CredentialView, Principal
from .http import Answer, Request, identify_argument, json_answer
from .routes import RouteSpec

__all__ = ["ADMIN_RESPONSE_MODELS", "ADMIN_ROUTES"]

#: Response bodies of the admin routes, for openapi.json.
ADMIN_RESPONSE_MODELS: tuple[type, ...] = (UserReport, Unlocked, GrantsRevoked, MfaReset, CredentialView)


async def _operator(request: Request) -> tuple[Admin, Operator]:
    service = request.service
    identify = request.mounted.admin_identify
    principal = None
    if identify is not None:
        try:
            principal = identify(identify_argument(request))
            if inspect.isawaitable(principal):
                principal = await principal
        except Unauthenticated:
            principal = None
    if not isinstance(principal, Principal):
        await service.emit(
            AuditEvent(
                type="admin_unauthenticated",
                outcome="failure",
                at=service.clock.now(),
                details={"path": request.path[:200], "method": request.method},
            )
        )
        raise Unauthenticated("the admin API needs an operator's credentials (see [admin.identify])")
    return Admin(service), Operator(name=principal.user_id, via="http")


async def show_user(request: Request) -> Answer:
    admin, operator = await _operator(request)
    return json_answer(await admin.show_user(request.params["userId"], operator))


async def unlock_user(request: Request) -> Answer:
    admin, operator = await _operator(request)
    return json_answer(await admin.unlock(request.params["userId"], operator))


async def revoke_user_grants(request: Request) -> Answer:
    admin, operator = await _operator(request)
    return json_answer(await admin.revoke_grants(request.params["userId"], operator))


async def revoke_session_grants(request: Request) -> Answer:
    admin, operator = await _operator(request)
    info = request.params
    return json_answer(await admin.revoke_grants(info["userId"], operator, info["sessionId"]))


async def delete_credential(request: Request) -> Answer:
    admin, operator = await _operator(request)
    info = request.params
    return json_answer(await admin.delete_credential(info["userId"], info["credentialId"], operator))


async def reset_mfa(request: Request) -> Answer:
    admin, operator = await _operator(request)
    return json_answer(await admin.reset_mfa(request.params["userId"], operator))


ADMIN_ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "GET",
        "/admin/users/{userId}",
        show_user,
        "adminShowUser",
        "A user's credentials, live grants and lockout",
        "Stored credentials as public views (never secrets), live grants without their tokens, and the "
        "failures counted toward the lockout.",
        response=UserReport,
        auth="admin",
        errors=(404, 422),
    ),
    RouteSpec(
        "POST",
        "/admin/users/{userId}/unlock",
        unlock_user,
        "adminUnlockUser",
        "Clear a user's lockout",
        response=Unlocked,
        auth="admin",
        errors=(404, 422),
    ),
    RouteSpec(
        "DELETE",
        "/admin/users/{userId}/grants",
        revoke_user_grants,
        "adminRevokeUserGrants",
        "Revoke every live grant of a user",
        response=GrantsRevoked,
        auth="admin",
        errors=(404, 422),
    ),
    RouteSpec(
        "DELETE",
        "/admin/users/{userId}/sessions/{sessionId}/grants",
        revoke_session_grants,
        "adminRevokeSessionGrants",
        "Revoke the live grants of one of a user's sessions",
        response=GrantsRevoked,
        auth="admin",
        errors=(404, 422),
    ),
    RouteSpec(
        "DELETE",
        "/admin/users/{userId}/credentials/{credentialId}",
        delete_credential,
        "adminDeleteCredential",
        "Delete one of a user's stored credentials",
        "Answers the deleted credential's public view.",
        response=CredentialView,
        auth="admin",
        errors=(404, 422),
    ),
    RouteSpec(
        "POST",
        "/admin/users/{userId}/mfa-reset",
        reset_mfa,
        "adminResetMfa",
        "Reset a user's MFA",
        "Removes every MFA credential (passkeys, authenticator apps, recovery codes) and revokes every live "
        "grant; the user steps up by re-authentication again and enrols new factors.",
        response=MfaReset,
        auth="admin",
        errors=(404, 422),
    ),
)
