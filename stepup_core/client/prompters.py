"""Prompters: how the client talks to the person stepping up.

:class:`TerminalPrompter` (the default) prints numbered choices and reads codes with hidden
input; without a terminal it raises :class:`~stepup_core.errors.PromptUnavailable` naming what to
do instead. :class:`ScriptedPrompter` plays a fixed script, for tests and unattended runs.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

import attrs

from ..errors import PromptUnavailable

#: What a program without a terminal does instead; in every "no terminal" error.
NO_TERMINAL_HINT = (
    "For unattended runs give StepUpClient a prompter=ScriptedPrompter(choices=[...], codes=[...]), "
    "and name the credential with credential_id=... so no choice is asked"
)


class ScriptExhausted(AssertionError):
    """A :class:`ScriptedPrompter` was asked for more than its script holds."""


@attrs.define
class TerminalPrompter:
    """Talks to a person at a terminal. Blocking reads run in a worker thread so the event loop
    (and any challenge polling) keeps running while the person types."""

    output: TextIO | None = None
    read_line: Callable[[str], str] = input
    read_secret: Callable[[str], str] = getpass.getpass

    def _out(self) -> TextIO:
        return self.output or sys.stderr

    async def _read(self, reader: Callable[[str], str], prompt: str, wanted: str) -> str:
        try:
            return await asyncio.to_thread(reader, prompt)
        except EOFError:
            raise PromptUnavailable(
                f"TerminalPrompter needs a terminal to ask for {wanted}, but standard input is closed "
                f"or not a terminal. {NO_TERMINAL_HINT}."
            ) from None

    async def choose(self, title: str, options: Sequence[str]) -> int:
        if not options:
            raise ValueError("nothing to choose from")
        out = self._out()
        print(title, file=out)
        for number, option in enumerate(options, start=1):
            print(f"  {number}. {option}", file=out)
        out.flush()
        while True:
            raw = (await self._read(self.read_line, f"Choose 1-{len(options)}: ", f"a choice ({title})")).strip()
            if raw.isdigit() and 1 <= int(raw) <= len(options):
                return int(raw) - 1
            print(f"Please type a number from 1 to {len(options)}.", file=out, flush=True)

    async def ask_code(self, label: str) -> str:
        while True:
            code = (await self._read(self.read_secret, f"{label}: ", f"a code ({label})")).strip()
            if code:
                return code
            print("Nothing was typed; try again.", file=self._out(), flush=True)

    async def tell(self, message: str) -> None:
        print(message, file=self._out(), flush=True)


@attrs.define
class ScriptedPrompter:
    """Answers from a script and fails loudly when the script runs out.

    ``choices`` are indexes, or strings picking the first option that contains them. ``codes``
    are answered in order. What was asked and told is recorded in ``asked`` and ``told``.
    """

    choices: list[int | str] = attrs.field(factory=list, converter=list)
    codes: list[str] = attrs.field(factory=list, converter=list)
    asked: list[tuple[str, tuple[str, ...]]] = attrs.field(factory=list, init=False)
    told: list[str] = attrs.field(factory=list, init=False)

    async def choose(self, title: str, options: Sequence[str]) -> int:
        self.asked.append((title, tuple(options)))
        if not self.choices:
            raise ScriptExhausted(f"the script has no choice left for {title!r}; options were {list(options)}")
        choice = self.choices.pop(0)
        if isinstance(choice, int):
            if not 0 <= choice < len(options):
                raise ScriptExhausted(f"scripted choice {choice} is out of range for {list(options)}")
            return choice
        for index, option in enumerate(options):
            if choice in option:
                return index
        raise ScriptExhausted(f"scripted choice {choice!r} matches none of {list(options)}")

    async def ask_code(self, label: str) -> str:
        self.asked.append((label, ()))
        if not self.codes:
            raise ScriptExhausted(f"the script has no code left for {label!r}")
        return self.codes.pop(0)

    async def tell(self, message: str) -> None:
        self.told.append(message)
