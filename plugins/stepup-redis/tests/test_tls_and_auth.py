"""``rediss://`` with certificate verification, and password authentication, on real servers."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest
from stepup_redis.store import open_redis_store
from stepup_redis.testing import RedisServer, free_port

from stepup_core.clock import SystemClock
from stepup_core.errors import StoreUnavailable


def _write_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stepup test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


async def test_rediss_verifies_the_server_certificate(
    tmp_path: Path, make_redis_server: Callable[..., RedisServer]
) -> None:
    ca, cert, key = _write_certificates(tmp_path / "tls")
    tls_port = free_port()
    make_redis_server(
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(cert),
        "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca),
        "--tls-auth-clients", "no",
    )  # fmt: skip

    store = await open_redis_store(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}", SystemClock())
    try:
        await store.put("k", "over tls", indexes=["idx"])
        assert await store.get("k") == "over tls"
        assert await store.list_index("idx") == {"k": "over tls"}
        assert await store.take("k") == "over tls"
    finally:
        await store.close()

    # Without the private CA the server's certificate is not trusted: no connection, no data.
    untrusted = await open_redis_store(f"rediss://127.0.0.1:{tls_port}/0", SystemClock())
    try:
        with pytest.raises(StoreUnavailable, match="certificate"):
            await untrusted.get("k")
    finally:
        await untrusted.close()

    # Plain redis:// to the TLS port does not fall back to anything readable.
    plain = await open_redis_store(f"redis://127.0.0.1:{tls_port}/0?socket_timeout=1", SystemClock())
    try:
        with pytest.raises(StoreUnavailable):
            await plain.get("k")
    finally:
        await plain.close()


async def test_password_authentication(make_redis_server: Callable[..., RedisServer]) -> None:
    server = make_redis_server("--requirepass", "correct-horse-battery")
    authenticated = await open_redis_store(f"redis://:correct-horse-battery@127.0.0.1:{server.port}/0", SystemClock())
    try:
        await authenticated.put("k", "v")
        assert await authenticated.get("k") == "v"
    finally:
        await authenticated.close()

    for url in (
        f"redis://:wrong-password@127.0.0.1:{server.port}/0",
        f"redis://127.0.0.1:{server.port}/0",
    ):
        store = await open_redis_store(url, SystemClock())
        try:
            with pytest.raises(StoreUnavailable) as info:
                await store.get("k")
            assert "wrong-password" not in str(info.value)
            with pytest.raises(StoreUnavailable):
                await store.put("k", "overwritten")
        finally:
            await store.close()


async def test_an_acl_user_limited_to_the_prefix_is_enough(
    tmp_path: Path, make_redis_server: Callable[..., RedisServer]
) -> None:
    acl = tmp_path / "users.acl"
    acl.write_text("user default off\nuser stepup on >acl-password ~stepup:* +@read +@write +@scripting +@connection\n")
    server = make_redis_server("--aclfile", str(acl))
    store = await open_redis_store(f"redis://stepup:acl-password@127.0.0.1:{server.port}/0", SystemClock())
    try:
        await store.ping()
        await store.put("k", "v", ttl=60, indexes=["idx"])
        assert await store.list_index("idx") == {"k": "v"}
        assert await store.take("k") == "v"
        assert await store.add("nonce", "n", ttl=60) is True
        assert await store.incr("counter", ttl=60) == 1
        assert await store.compare_and_set("cas", None, "1") is True
        assert await store.delete("cas") is True
    finally:
        await store.close()

    # Keys outside the user's pattern are refused by Redis: stepup reports the store unusable.
    outside = await open_redis_store(
        f"redis://stepup:acl-password@127.0.0.1:{server.port}/0?prefix=other:", SystemClock()
    )
    try:
        with pytest.raises(StoreUnavailable, match="refused"):
            await outside.put("k", "v")
        with pytest.raises(StoreUnavailable, match="refused"):
            await outside.get("k")
    finally:
        await outside.close()


async def test_a_full_redis_without_eviction_refuses_writes_as_store_unavailable(
    make_redis_server: Callable[..., RedisServer],
) -> None:
    server = make_redis_server("--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
    store = await open_redis_store(server.url, SystemClock())
    try:
        chunk = "x" * (64 * 1024)
        written = 0
        with pytest.raises(StoreUnavailable, match=r"OOM|memory"):
            for written in range(1000):
                await store.put(f"filler-{written}", chunk)
        assert written > 0
        # What was written is still there and readable: nothing was evicted.
        assert await store.get("filler-0") == chunk
        assert await store.get(f"filler-{written - 1}") == chunk
        assert await store.take(f"filler-{written - 1}") == chunk  # deleting frees memory ...
        await store.put("after", "small")  # ... and writes work again
    finally:
        await store.close()
