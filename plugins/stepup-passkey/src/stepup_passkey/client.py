"""The client half of ``passkey``: answer WebAuthn options with an authenticator.

The authenticator is, in order: the ``authenticator=`` option of the call, the context's actor
(:class:`~stepup_passkey.testing.SoftwareAuthenticator` in unattended runs), else a FIDO2
security key on USB through fido2's :class:`~fido2.client.Fido2Client`.

Any object with ``create(options)`` and ``get(options)`` taking the ``publicKey`` JSON and
returning the PublicKeyCredential JSON is an authenticator (:class:`PasskeyAuthenticator`).
fido2 is imported inside the functions that use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from stepup_core.client.method import Answer, ClientContext
from stepup_core.errors import InvalidResponse, StepUpError

from .verifier import METHOD, PACKAGE


class SecurityKeyNotFound(StepUpError):
    """No FIDO2 security key is connected (and no other authenticator was given)."""

    code = "security_key_not_found"
    status = 400
    title = "No security key found"


class AuthenticatorFailed(StepUpError):
    """The authenticator refused or failed the ceremony (cancelled, timed out, wrong PIN,
    already registered, no matching passkey)."""

    code = "authenticator_failed"
    status = 400
    title = "Authenticator failed"


@runtime_checkable
class PasskeyAuthenticator(Protocol):
    """What answers WebAuthn options: a browser's ``navigator.credentials`` in Python."""

    def create(self, public_key: Mapping[str, Any]) -> dict[str, Any]:
        """PublicKeyCredentialCreationOptionsJSON in, RegistrationResponseJSON out."""
        ...

    def get(self, public_key: Mapping[str, Any]) -> dict[str, Any]:
        """PublicKeyCredentialRequestOptionsJSON in, AuthenticationResponseJSON out."""
        ...


def _list_hid_devices() -> Iterable[Any]:
    from fido2.hid import CtapHidDevice

    return CtapHidDevice.list_devices()


@attrs.define
class SecurityKeyAuthenticator:
    """A FIDO2 security key on USB (CTAP HID), driven by fido2's Fido2Client.

    :param origin: the origin to put in clientDataJSON; None: ``https://<rpId>``. It must be
        one of the server's ``plugins.passkey.origins``.
    :param pin: the key's PIN, when it has one and no ``ask_pin`` is given.
    :param ask_pin: called (in a worker thread) when the key wants its PIN.
    :param on_touch: called when the key waits for a touch.
    :param devices: lists connected devices; fido2's ``CtapHidDevice.list_devices`` by default.
    """

    origin: str | None = None
    pin: str | None = None
    ask_pin: Callable[[], str | None] | None = None
    on_touch: Callable[[], None] | None = None
    devices: Callable[[], Iterable[Any]] = _list_hid_devices

    def _device(self) -> Any:
        found = list(self.devices())
        if not found:
            raise SecurityKeyNotFound(
                "no security key found: plug in a FIDO2 security key (USB) and try again, "
                "or pass an authenticator"
            )
        return found[0]

    def _client(self, rp_id: str | None) -> Any:
        from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction

        outer = self

        class Interaction(UserInteraction):
            def prompt_up(self) -> None:
                if outer.on_touch is not None:
                    outer.on_touch()

            def request_pin(self, permissions: Any, rp_id: str | None) -> str | None:
                if outer.pin is not None:
                    return outer.pin
                return outer.ask_pin() if outer.ask_pin is not None else None

            def request_uv(self, permissions: Any, rp_id: str | None) -> bool:
                return True

        origin = self.origin or f"https://{rp_id or 'localhost'}"
        return Fido2Client(self._device(), DefaultClientDataCollector(origin), user_interaction=Interaction())

    def create(self, public_key: Mapping[str, Any]) -> dict[str, Any]:
        rp = public_key.get("rp")
        client = self._client(rp.get("id") if isinstance(rp, Mapping) else None)
        return dict(client.make_credential(dict(public_key)))

    def get(self, public_key: Mapping[str, Any]) -> dict[str, Any]:
        client = self._client(public_key.get("rpId"))
        return dict(client.get_assertion(dict(public_key)).get_response(0))


def _public_key(message: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    data = message.get("data")
    public_key = data.get("publicKey") if isinstance(data, Mapping) else None
    if not isinstance(public_key, Mapping):
        raise InvalidResponse(f"the {what} carries no WebAuthn options (data.publicKey)", field="data.publicKey")
    return public_key


@attrs.define
class PasskeyClientMethod:
    """The ``passkey`` method's client half (see the module documentation).

    Options read from the call: ``authenticator`` (a :class:`PasskeyAuthenticator`),
    ``origin`` and ``pin`` (for a security key), ``user_name`` and ``display_name`` (enrolment).
    """

    name: str = METHOD
    package: str = PACKAGE

    def authenticator(self, ctx: ClientContext) -> PasskeyAuthenticator:
        given = ctx.options.get("authenticator")
        if given is not None:
            if not isinstance(given, PasskeyAuthenticator):
                raise TypeError("authenticator= must have create(options) and get(options) methods")
            return given
        if isinstance(ctx.actor, PasskeyAuthenticator):
            return ctx.actor
        loop = asyncio.get_running_loop()

        def ask_pin() -> str | None:
            return asyncio.run_coroutine_threadsafe(ctx.prompter.ask_code("Security key PIN"), loop).result()

        def on_touch() -> None:
            asyncio.run_coroutine_threadsafe(ctx.prompter.tell("Touch your security key"), loop).result()

        return SecurityKeyAuthenticator(
            origin=ctx.options.get("origin"), pin=ctx.options.get("pin"), ask_pin=ask_pin, on_touch=on_touch
        )

    async def _run(self, call: Callable[[Mapping[str, Any]], dict[str, Any]], public_key: Mapping[str, Any]) -> Any:
        try:
            # A security key blocks until touched; keep the event loop free meanwhile.
            return await asyncio.to_thread(call, public_key)
        except StepUpError:
            raise
        except Exception as exc:
            raise AuthenticatorFailed(f"the authenticator did not complete the ceremony: {exc}") from exc

    async def answer(self, challenge: Mapping[str, Any], ctx: ClientContext) -> Answer:
        public_key = _public_key(challenge, "challenge")
        credential = await self._run(self.authenticator(ctx).get, public_key)
        return Answer(response={"credential": credential})

    async def enrollment_params(self, ctx: ClientContext) -> Mapping[str, Any]:
        params = {}
        if ctx.options.get("user_name"):
            params["userName"] = str(ctx.options["user_name"])
        if ctx.options.get("display_name"):
            params["displayName"] = str(ctx.options["display_name"])
        return params

    async def answer_enrollment(self, enrollment: Mapping[str, Any], ctx: ClientContext) -> Mapping[str, Any]:
        public_key = _public_key(enrollment, "enrolment")
        credential = await self._run(self.authenticator(ctx).create, public_key)
        response: dict[str, Any] = {"credential": credential}
        if ctx.options.get("alias"):
            response["alias"] = str(ctx.options["alias"])
        return response

    def unattended(self) -> Any:
        from .testing import SoftwareAuthenticator

        return SoftwareAuthenticator()
