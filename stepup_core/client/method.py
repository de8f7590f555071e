"""The client half of a method: answer a challenge the server issued."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs


class Prompter(Protocol):
    """Talks to the person. The terminal prompter is the default; tests script one."""

    async def choose(self, title: str, options: Sequence[str]) -> int:
        """Index of the chosen option."""
        ...

    async def ask_code(self, label: str) -> str:
        """A code typed by the person (hidden input on a terminal)."""
        ...

    async def tell(self, message: str) -> None: ...


@attrs.define
class ClientContext:
    """What the client lends a client method.

    ``options`` are the keyword arguments of the call (``code=``, ``signer=``, ``authenticator=``,
    ``open_url=``...). ``actor`` stands in for the person in unattended runs (see
    :meth:`ClientMethod.unattended`).
    """

    prompter: Prompter
    options: Mapping[str, Any] = attrs.field(factory=dict)
    actor: Any = None


@attrs.frozen
class Answer:
    """A client method's answer: a ``response`` to post to ``/verify``, or ``completed_elsewhere``
    (a redirect method: the server completes the challenge by callback; the client polls)."""

    response: Mapping[str, Any] | None = None
    completed_elsewhere: bool = False


@runtime_checkable
class ClientMethod(Protocol):
    """Registered by ``stepup_register_client_methods``; ``name`` matches the server's verifier."""

    name: str
    #: Distribution that provides it.
    package: str

    async def answer(self, challenge: Mapping[str, Any], ctx: ClientContext) -> Answer:
        """Answer a challenge (the ``POST /challenges`` body, or a synthetic one with no id for
        methods that need none)."""
        ...

    async def enrollment_params(self, ctx: ClientContext) -> Mapping[str, Any]:
        """Parameters for ``POST /enrollments`` (an address to link, a wallet and its proof)."""
        ...

    async def answer_enrollment(self, enrollment: Mapping[str, Any], ctx: ClientContext) -> Mapping[str, Any]:
        """The response that completes an enrolment (a current code, an attestation).

        Also called when the server completed the enrolment at once (the answer already holds
        the ``credential``, as for recovery codes): the method keeps or shows what the server
        returned, and the client sends nothing back."""
        ...

    # Optional: ``label(credential: CredentialView) -> str`` names a credential in a choice
    # ("SMS code"); without it the client uses the server's ``MethodInfo.label``.

    def unattended(self) -> Any | None:
        """An actor that can stand in for the person with no one at the keyboard (an authenticator
        app, a software security key, a local wallet key), or None when the method needs an
        outside party. ``stepup demo`` and tests put it in ``ClientContext.actor``."""
        ...
