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
    Migration(
        2,
        "stepup_reserve and stepup_settle: each a store operation in one statement",
        """
-- reserve: the counters' keys locked (transaction-level advisory locks, in key order), their
-- live values read, and all incremented only when none is at its limit. Answers the flag
-- (1 granted, 0 refused) then each counter's value: after the reservation when granted, as
-- found (0 when absent) when refused. A value that is not an integer fails the statement.
CREATE FUNCTION stepup_reserve(p_keys text[], p_limits bigint[], p_ttls float8[]) RETURNS bigint[]
LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(array_length(p_keys, 1), 0);
    counts bigint[] := '{}';
    found_value bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(p_keys) AS k ORDER BY k;
    FOR i IN 1 .. n LOOP
        found_value := NULL;
        SELECT value::bigint INTO found_value FROM stepup_records
        WHERE key = p_keys[i] AND (expires_at IS NULL OR expires_at > now());
        counts := counts || coalesce(found_value, 0);
    END LOOP;
    FOR i IN 1 .. n LOOP
        IF counts[i] >= p_limits[i] THEN
            RETURN 0::bigint || counts;
        END IF;
    END LOOP;
    FOR i IN 1 .. n LOOP
        INSERT INTO stepup_records AS r (key, value, expires_at, indexes)
        VALUES (p_keys[i], '1', now() + p_ttls[i] * interval '1 second', '{}')
        ON CONFLICT (key) DO UPDATE SET
            value = CASE WHEN r.expires_at IS NOT NULL AND r.expires_at <= now() THEN '1'
                         ELSE (r.value::bigint + 1)::text END,
            expires_at = CASE WHEN r.expires_at IS NOT NULL AND r.expires_at <= now() THEN excluded.expires_at
                              ELSE r.expires_at END,
            indexes = CASE WHEN r.expires_at IS NOT NULL AND r.expires_at <= now() THEN '{}' ELSE r.indexes END;
        counts[i] := counts[i] + 1;
    END LOOP;
    RETURN 1::bigint || counts;
END
$$;

-- settle: the release counters' keys locked as reserve locks them; the record p_take taken
-- (when not NULL; none live: nothing at all is changed and the answer is false); each live
-- counter of p_release given one place back (removed at 0); then each write, in order, as put
-- writes it: p_keys, p_values, p_ttls (NULL: no expiry) side by side, and the index names of
-- write i the next p_index_counts[i] entries of p_index_names.
CREATE FUNCTION stepup_settle(
    p_take text, p_release text[], p_keys text[], p_values text[], p_ttls float8[],
    p_index_counts integer[], p_index_names text[]
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    left_value bigint;
    names_at integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(p_release) AS k ORDER BY k;
    IF p_take IS NOT NULL THEN
        DELETE FROM stepup_records WHERE key = p_take AND (expires_at IS NULL OR expires_at > now());
        IF NOT FOUND THEN
            RETURN false;
        END IF;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_release, 1), 0) LOOP
        UPDATE stepup_records SET value = (value::bigint - 1)::text
        WHERE key = p_release[i] AND (expires_at IS NULL OR expires_at > now())
        RETURNING value::bigint INTO left_value;
        IF FOUND AND left_value <= 0 THEN
            DELETE FROM stepup_records WHERE key = p_release[i];
        END IF;
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
        INSERT INTO stepup_records AS r (key, value, expires_at, indexes)
        VALUES (p_keys[i], p_values[i], now() + p_ttls[i] * interval '1 second',
                coalesce(p_index_names[names_at + 1 : names_at + p_index_counts[i]], '{}'))
        ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at,
                                        indexes = excluded.indexes;
        names_at := names_at + p_index_counts[i];
    END LOOP;
    RETURN true;
END
$$;
""",
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
