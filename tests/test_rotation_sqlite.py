"""Secret-key rotation with live TOTP devices, passkeys and recovery codes on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepup_core.testing.rotation import KeyRotationSuite


class TestSQLiteKeyRotation(KeyRotationSuite):
    @pytest.fixture
    def rotation_store_url(self, tmp_path: Path) -> str:
        return f"sqlite:{tmp_path / 'rotation.sqlite3'}"
