"""The client half of the ``totp`` method, and an authenticator app for unattended runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from stepup_core.client.method import Answer, ClientContext
from stepup_core.clock import Clock, SystemClock

from .otp import OtpauthKey, parse_otpauth_uri
from .verifier import METHOD, PACKAGE


@attrs.define
class AppEntry:
    """One account in an authenticator app."""

    key: OtpauthKey
    enrollment_id: str | None = None
    credential_id: str | None = None


@attrs.define
class AuthenticatorApp:
    """Stands in for a person's authenticator app: it keeps the keys it was given as
    ``otpauth://`` URIs and shows the current code of each.

    ``stepup demo`` and tests use it in place of a phone. It reads URIs under the plugin's
    policy (:func:`~stepup_totp.otp.parse_otpauth_uri`): short secrets, HOTP URIs and repeated
    parameters are refused.
    """

    clock: Clock = attrs.field(factory=SystemClock)
    entries: list[AppEntry] = attrs.field(factory=list)

    def add(self, uri: str, *, enrollment_id: str | None = None) -> AppEntry:
        """Scan a QR code (or paste its URI)."""
        entry = AppEntry(parse_otpauth_uri(uri), enrollment_id=enrollment_id)
        self.entries.append(entry)
        return entry

    def link(self, credential_id: str, enrollment_id: str | None = None) -> None:
        """Remember which server credential an enrolment became (by default the newest entry
        not linked yet), so challenges naming the credential find the right entry."""
        for entry in reversed(self.entries):
            wanted = entry.credential_id is None if enrollment_id is None else entry.enrollment_id == enrollment_id
            if wanted:
                entry.credential_id = credential_id
                return
        raise KeyError(f"no entry to link to {credential_id!r} (enrolment {enrollment_id!r})")

    def entry_for(self, challenge: Mapping[str, Any] | None = None) -> AppEntry:
        """The entry a challenge asks for: by credential id when linked, else by label, else the
        newest entry."""
        if not self.entries:
            raise LookupError("the authenticator app holds no accounts; enrol a device first")
        challenge = challenge or {}
        data = challenge.get("data") or {}
        credential_id = challenge.get("credentialId") or data.get("credentialId")
        label = data.get("label")
        if credential_id:
            for entry in reversed(self.entries):
                if entry.credential_id == credential_id:
                    return entry
        if label:
            for entry in reversed(self.entries):
                if entry.key.label == label:
                    return entry
        return self.entries[-1]

    def code(self, challenge: Mapping[str, Any] | None = None) -> str:
        """The code the app shows now for the entry the challenge asks for."""
        return self.entry_for(challenge).key.code_at(self.clock.now())


def _enrollment_data(enrollment: Mapping[str, Any]) -> Mapping[str, Any]:
    data = enrollment.get("data")
    return data if isinstance(data, Mapping) else enrollment


class TotpClientMethod:
    """Asks the person for the code their authenticator app shows (or uses ``code=``, or the
    unattended :class:`AuthenticatorApp`)."""

    name: str = METHOD
    package: str = PACKAGE

    async def answer(self, challenge: Mapping[str, Any], ctx: ClientContext) -> Answer:
        code = ctx.options.get("code")
        if code is None and isinstance(ctx.actor, AuthenticatorApp):
            code = ctx.actor.code(challenge)
        if code is None:
            data = challenge.get("data") or {}
            label = data.get("label")
            where = f" for {label}" if label else ""
            code = await ctx.prompter.ask_code(f"Code from your authenticator app{where}")
        return Answer(response={"code": str(code).strip()})

    async def enrollment_params(self, ctx: ClientContext) -> Mapping[str, Any]:
        params: dict[str, Any] = {}
        for key, aliases in (
            ("alias", ("alias",)),
            ("accountName", ("accountName", "account_name")),
            ("digits", ("digits",)),
            ("algorithm", ("algorithm",)),
            ("period", ("period",)),
        ):
            for option in aliases:
                if ctx.options.get(option) is not None:
                    params[key] = ctx.options[option]
                    break
        return params

    async def answer_enrollment(self, enrollment: Mapping[str, Any], ctx: ClientContext) -> Mapping[str, Any]:
        data = _enrollment_data(enrollment)
        enrollment_id = enrollment.get("enrollmentId") or data.get("enrollmentId")
        code = ctx.options.get("code")
        if isinstance(ctx.actor, AuthenticatorApp):
            entry = ctx.actor.add(str(data["otpauthUri"]), enrollment_id=enrollment_id)
            if code is None:
                code = entry.key.code_at(ctx.actor.clock.now())
        if code is None:
            await ctx.prompter.tell(
                "Scan this QR code with your authenticator app:\n"
                f"{data.get('qrText', '')}\n"
                f"or enter this key by hand: {data.get('secret', '')}"
            )
            code = await ctx.prompter.ask_code("Code shown by your authenticator app for the new entry")
        return {"code": str(code).strip()}

    def unattended(self) -> AuthenticatorApp:
        return AuthenticatorApp()
