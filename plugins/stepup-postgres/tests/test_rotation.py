"""Secret-key rotation with live TOTP devices, passkeys and recovery codes on PostgreSQL."""

from __future__ import annotations

import pytest

from stepup_core.testing.rotation import KeyRotationSuite


class TestPostgresKeyRotation(KeyRotationSuite):
    @pytest.fixture
    def rotation_store_url(self, postgres_url: str) -> str:
        return postgres_url
