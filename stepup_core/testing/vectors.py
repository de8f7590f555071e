"""The conformance vectors (RFC 6238/4226, WebAuthn, EIP-4361, EIP-191) and loading them.

The vectors live in the repository under ``tests/vectors/`` (a folder holding a ``README.md``
that names each file's source). The folder is found, in this order:

1. ``STEPUP_VECTORS``, when set: the folder itself (a third-party plugin pointing at its copy);
2. ``tests/vectors`` in the current directory or one of its parents: the plugins' tests run
   from the repository's root (``nox``), or from a plugin's folder below it;
3. ``tests/vectors`` beside an editable install of ``stepup_core``.

Nothing is read at import time. A missing folder or file raises :class:`VectorsNotFound` in the
test that needs it, naming the file and where it was looked for: a conformance check fails
loudly, it never vanishes and never stops collection. Parametrize with :func:`vector_cases`,
which defers the failure to the test as well.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest

ENV_VAR = "STEPUP_VECTORS"
#: Where the vectors sit below the repository's root.
RELATIVE_PATH = Path("tests") / "vectors"
#: The file that marks a vectors folder (it names each file's source).
MARKER = "README.md"


class VectorsNotFound(Exception):
    """The vectors folder, or a file in it, is missing. Raised in the test that needs it."""


def _candidates() -> list[Path]:
    override = os.environ.get(ENV_VAR)
    if override:
        return [Path(override)]
    cwd = Path.cwd()
    here = Path(__file__).resolve()
    return [parent / RELATIVE_PATH for parent in (cwd, *cwd.parents, *here.parents[2:])]


def vectors_dir() -> Path:
    """The vectors folder, or :class:`VectorsNotFound` listing where it was looked for."""
    candidates = _candidates()
    for candidate in candidates:
        if (candidate / MARKER).is_file():
            return candidate.resolve()
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    hint = (
        f"{ENV_VAR} names a folder without {MARKER}"
        if os.environ.get(ENV_VAR)
        else f"run the tests from the repository's root (or below it), or set {ENV_VAR} to the folder"
    )
    raise VectorsNotFound(f"conformance vectors not found: no {MARKER} in {looked}; {hint}")


@functools.cache
def _read(folder: Path, name: str) -> str:
    try:
        return (folder / name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VectorsNotFound(
            f"conformance vector file {name!r} is missing from {folder} (the README there lists the files)"
        ) from None


def load_vectors(name: str) -> Any:
    """Parse one vector file, ``name`` relative to the vectors folder (``siwe/eip1271.json``).

    Call it inside a test (or a fixture), never at import time: a missing file raises
    :class:`VectorsNotFound` there. Each call parses afresh, so a test may change what it gets.
    """
    return json.loads(_read(vectors_dir(), name))


class MissingVectors(Mapping[str, Any]):
    """Stands in for the cases of a vector file that could not be read: the test that receives
    it raises :class:`VectorsNotFound` with the reason as soon as it reads the case."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def _fail(self) -> NoReturn:
        raise VectorsNotFound(self.reason)

    def __getitem__(self, key: str) -> Any:
        self._fail()

    def __iter__(self) -> Iterator[str]:
        self._fail()

    def __len__(self) -> int:
        self._fail()

    def __repr__(self) -> str:
        return f"MissingVectors({self.reason!r})"


def vector_cases(
    name: str,
    select: Callable[[Any], Iterable[Any]],
    ids: Callable[[Any], str] | None = None,
) -> list[Any]:
    """Parameters for ``pytest.mark.parametrize``: one per case of the vector file ``name``.

    :param select: picks the cases from the parsed file (``lambda data: data["cases"]``).
    :param ids: the test id of a case (default: its ``id`` member, else its position).
    :returns: ``pytest.param`` objects. When the file cannot be read, one parameter
        (``vectors-missing``) whose test raises :class:`VectorsNotFound` naming the file.
    """
    try:
        cases = list(select(load_vectors(name)))
    except VectorsNotFound as exc:
        return [pytest.param(MissingVectors(str(exc)), id="vectors-missing")]

    def case_id(index: int, case: Any) -> str:
        if ids is not None:
            return ids(case)
        if isinstance(case, Mapping) and isinstance(case.get("id"), str):
            return str(case["id"])
        return f"case{index}"

    return [pytest.param(case, id=case_id(i, case)) for i, case in enumerate(cases)]
