"""Secret keys with ids: sealing and keyed hashes under several keys, values from before key
ids, and the configuration of several keys."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from stepup_core.config import config_from_mapping
from stepup_core.crypto import SecretKeyMissing, SecretKeys, key_id, key_id_of
from stepup_core.errors import ConfigError
from stepup_core.keyring import LEDGER_KEY, check_key_ledger, read_key_ledger
from stepup_core.store.memory import MemoryStore

OLD, NEW = secrets.token_bytes(32), secrets.token_bytes(32)


def test_key_ids_are_stable_short_and_distinct() -> None:
    assert key_id(OLD) == key_id(OLD)
    assert len(key_id(OLD)) == 8 and key_id(OLD) != key_id(NEW)
    keys = SecretKeys(NEW, previous=(OLD,))
    assert keys.key_ids == (key_id(NEW), key_id(OLD))
    assert keys.current_id == key_id(NEW)


def test_a_key_configured_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="configured twice"):
        SecretKeys(OLD, previous=(OLD,))


def test_new_values_use_the_current_key_and_old_ones_still_read() -> None:
    before = SecretKeys(OLD)
    sealed, digest = before.seal("p", b"seed"), before.keyed_hash("h", "123456")
    assert key_id_of(sealed) == key_id(OLD) and key_id_of(digest) == key_id(OLD)

    both = SecretKeys(NEW, previous=(OLD,))
    assert both.unseal("p", sealed) == b"seed"
    assert both.verify_keyed_hash("h", "123456", digest)
    assert not both.verify_keyed_hash("h", "654321", digest)
    assert key_id_of(both.seal("p", b"x")) == key_id(NEW)
    assert key_id_of(both.keyed_hash("h", "1")) == key_id(NEW)
    resealed = both.reseal("p", sealed)
    assert resealed is not None and both.is_current(resealed) and both.unseal("p", resealed) == b"seed"
    assert both.reseal("p", resealed) is None  # already current


def test_a_value_naming_a_key_that_is_gone_is_refused_not_guessed() -> None:
    sealed = SecretKeys(OLD).seal("p", b"seed")
    digest = SecretKeys(OLD).keyed_hash("h", "123456")
    only_new = SecretKeys(NEW)
    with pytest.raises(SecretKeyMissing, match=key_id(OLD)):
        only_new.unseal("p", sealed)
    with pytest.raises(SecretKeyMissing):
        only_new.verify_keyed_hash("h", "123456", digest)


def test_a_hash_moved_to_another_key_id_does_not_verify() -> None:
    keys = SecretKeys(NEW, previous=(OLD,))
    digest = keys.keyed_hash("h", "123456", key_id=key_id(OLD))
    forged = key_id(NEW) + digest[8:]  # the old key's HMAC presented as the new key's
    assert keys.verify_keyed_hash("h", "123456", digest)
    assert not keys.verify_keyed_hash("h", "123456", forged)
    assert not keys.verify_keyed_hash("h", "123456", "not a hash")


def test_values_from_before_key_ids_are_tried_against_every_key() -> None:
    old = SecretKeys(OLD)
    legacy_sealed = old.seal("p", b"seed").replace(f"aesgcm:{key_id(OLD)}:", "aesgcm:")
    legacy_hash = old.legacy_keyed_hashes("h", "123456")[0]
    both = SecretKeys(NEW, previous=(OLD,))
    assert key_id_of(legacy_sealed) is None
    assert both.unseal("p", legacy_sealed) == b"seed"
    assert both.verify_keyed_hash("h", "123456", legacy_hash)
    assert not both.verify_keyed_hash("h", "000000", legacy_hash)
    assert both.is_current(both.reseal("p", legacy_sealed) or "")
    with pytest.raises(InvalidTag):  # tampered, under no key
        both.unseal("p", legacy_sealed[:-4] + ("AAAA" if not legacy_sealed.endswith("AAAA") else "BBBB"))
    with pytest.raises(InvalidTag):  # sealed for another purpose
        both.unseal("other", legacy_sealed)


# --- configuration ----------------------------------------------------------------------------


def test_secret_keys_and_the_key_file_give_the_current_key_first(tmp_path: Path) -> None:
    config = config_from_mapping({"secret_keys": [NEW.hex(), OLD.hex()]})
    assert config.secret_keys_bytes() == [NEW, OLD]
    assert config.secret_key_bytes() == NEW
    key_file = tmp_path / "keys"
    key_file.write_text(f"# rotated 2026-11\n{NEW.hex()}\n\n{OLD.hex()}   # the old one\n")
    assert config_from_mapping({"secret_keys_file": str(key_file)}).secret_keys_bytes() == [NEW, OLD]
    assert config_from_mapping({"secret_key": OLD.hex()}).secret_keys_bytes() == [OLD]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"secret_key": OLD.hex(), "secret_keys": [NEW.hex()]}, "set only one of"),
        ({"secret_keys": [NEW.hex(), "short"]}, "secret key #2: secret_key must be at least 32"),
        ({"secret_keys_file": "/nonexistent/keys"}, "cannot be read"),
    ],
)
def test_bad_key_settings_are_config_errors(mapping: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(mapping)


def test_an_empty_key_file_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="holds no key"):
        config_from_mapping({"secret_keys_file": str(key_file)})


# --- the ledger -------------------------------------------------------------------------------


async def test_the_ledger_records_keys_and_refuses_dropping_one_still_needed() -> None:
    store = MemoryStore()
    await check_key_ledger(store, SecretKeys(OLD))
    ledger = await read_key_ledger(store)
    assert ledger is not None and set(ledger.in_use) == {key_id(OLD)}
    await check_key_ledger(store, SecretKeys(NEW, previous=(OLD,)))  # a new current key is recorded
    ledger = await read_key_ledger(store)
    assert ledger is not None and set(ledger.in_use) == {key_id(OLD), key_id(NEW)}
    with pytest.raises(SecretKeyMissing, match=f"secret key {key_id(OLD)} is not configured"):
        await check_key_ledger(store, SecretKeys(NEW))
    assert await store.get(LEDGER_KEY) is not None


def test_a_key_file_others_can_read_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(NEW.hex() + "\n")
    key_file.chmod(0o600)
    config_from_mapping({"secret_keys_file": str(key_file)})
    assert "readable by other users" not in caplog.text
    key_file.chmod(0o644)
    config_from_mapping({"secret_keys_file": str(key_file)})
    assert "readable by other users; chmod 600 it" in caplog.text
