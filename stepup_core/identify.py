"""Kept so ``from stepup_core.identify import ...`` keeps working: the identify callables live in
:mod:`stepup_core.server.identify`."""

from .server.identify import (
    HMAC_ALGORITHMS,
    JWKS_CACHE_SECONDS,
    JWKS_REFRESH_MIN_SECONDS,
    JWT_LEEWAY_SECONDS,
    MAX_TOKEN_LENGTH,
    MIN_HMAC_SECRET_BYTES,
    DevelopmentIdentify,
    JwtIdentify,
    StaticTokenIdentify,
    bearer_token,
    identify_from_config,
)

__all__ = [
    "HMAC_ALGORITHMS",
    "JWKS_CACHE_SECONDS",
    "JWKS_REFRESH_MIN_SECONDS",
    "JWT_LEEWAY_SECONDS",
    "MAX_TOKEN_LENGTH",
    "MIN_HMAC_SECRET_BYTES",
    "DevelopmentIdentify",
    "JwtIdentify",
    "StaticTokenIdentify",
    "bearer_token",
    "identify_from_config",
]
