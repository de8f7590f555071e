"""Schema versions of the SQL stores, and the optional store capabilities operations use.

A SQL backend keeps its schema as an ordered list of :class:`Migration` and a version table
recording which ran; ``stepup migrate`` applies the pending ones (:class:`MigratingStore`).
A released migration is never edited: a change is a new migration with the next version.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import attrs

__all__ = ["MigratingStore", "Migration", "ScanningStore"]


@attrs.frozen
class Migration:
    version: int
    description: str
    sql: str


@runtime_checkable
class MigratingStore(Protocol):
    """A store with a versioned schema (SQLite, PostgreSQL)."""

    #: The schema version found when the store first reached its database (None: not yet).
    version_at_open: int | None

    async def migrate(self) -> list[Migration]:
        """Apply every pending migration; the ones applied (none when up to date)."""
        ...

    async def schema_version(self) -> int:
        """The database's schema version now (0: none yet)."""
        ...


@runtime_checkable
class ScanningStore(Protocol):
    """A store that can list its live records by key prefix. Optional in the Store protocol:
    ``stepup keys rotate`` needs it to find every stored credential."""

    def scan(self, prefix: str, *, batch: int = 500) -> AsyncIterator[tuple[str, str]]:
        """Every live record whose key starts with ``prefix`` (key, value), read ``batch`` at a
        time; order unspecified. Records written during the scan may or may not appear."""
        ...
