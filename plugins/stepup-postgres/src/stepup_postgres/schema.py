"""The PostgreSQL schema as forward migrations, applied in order by ``stepup migrate``.

A migration is never edited once released: a change to the schema is a new migration with the
next version. ``stepup_schema_version`` holds one row per applied migration.
"""

from __future__ import annotations

from stepup_core.store.migrations import Migration

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration"]

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "records with expiry and index names; the schema version table",
        """
CREATE TABLE IF NOT EXISTS stepup_schema_version (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE stepup_records (
    key text COLLATE "C" PRIMARY KEY,
    value text NOT NULL,
    expires_at timestamptz,
    indexes text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX stepup_records_expires_at ON stepup_records (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX stepup_records_indexes ON stepup_records USING gin (indexes) WITH (fastupdate = off);
""",
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
