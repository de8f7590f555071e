"""stepup-postgres: the ``postgresql://`` store, so many stepup instances share one database.

Configure it with ``store = "postgresql://user@host:5432/dbname"`` in ``stepup.toml``. The store
itself lives in :mod:`stepup_postgres.store`; importing this package does not import asyncpg.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
