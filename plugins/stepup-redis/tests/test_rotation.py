"""Secret-key rotation with live TOTP devices, passkeys and recovery codes on Redis."""

from __future__ import annotations

import pytest

from stepup_core.testing.rotation import KeyRotationSuite


class TestRedisKeyRotation(KeyRotationSuite):
    @pytest.fixture
    def rotation_store_url(self, redis_url: str) -> str:
        return redis_url
