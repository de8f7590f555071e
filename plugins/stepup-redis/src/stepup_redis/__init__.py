"""stepup-redis: the ``redis://`` and ``rediss://`` store, so many stepup instances share one state.

Configure it with ``store = "redis://host:6379/0"`` in ``stepup.toml``. The store itself lives in
:mod:`stepup_redis.store`; importing this package does not import ``redis``.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
