"""The pure TOTP functions: RFC vectors, the drift window, and the policy on secrets and URIs."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from stepup_totp.otp import (
    MIN_SECRET_BITS,
    SECRET_BYTES,
    build_otpauth_uri,
    code_at,
    code_for_step,
    decode_secret,
    generate_secret,
    parse_otpauth_uri,
    verify_code,
)

from stepup_core.testing.vectors import load_vectors, vector_cases

RFC6238_FILE = "totp_rfc6238_appendix_b.json"
RFC4226_FILE = "hotp_rfc4226_appendix_d.json"
OTPAUTH_FILE = "otpauth_uri_and_pyotp_vectors.json"
#: The RFC 6238 Appendix A 20-byte seed, base32 (``test_seed_is_the_rfc_sha1_key`` checks it
#: against the vectors); module-level parameters use it, so it is not read from a file.
SEED = base64.b32encode(b"12345678901234567890").decode()


def rfc6238() -> Any:
    return load_vectors(RFC6238_FILE)


def otpauth() -> Any:
    return load_vectors(OTPAUTH_FILE)


def test_seed_is_the_rfc_sha1_key() -> None:
    assert rfc6238()["keys"]["SHA1"]["base32_derived"] == SEED


def test_vector_files_cover_every_mode() -> None:
    vectors = rfc6238()
    assert len(vectors["cases"]) == 18
    assert {case["mode"] for case in vectors["cases"]} == {"SHA1", "SHA256", "SHA512"}
    for mode, length in (("SHA1", 20), ("SHA256", 32), ("SHA512", 64)):
        key = vectors["keys"][mode]
        assert decode_secret(key["base32_derived"]) == key["ascii"].encode() == bytes.fromhex(key["hex"])
        assert len(decode_secret(key["base32_derived"])) == length


@pytest.mark.parametrize(
    "case", vector_cases(RFC6238_FILE, lambda data: data["cases"], ids=lambda c: f"{c['mode']}-{c['time']}")
)
def test_rfc6238_appendix_b_verifies(case: dict[str, Any]) -> None:
    at, algorithm, expected = case["time"], case["mode"], case["totp"]
    secret = rfc6238()["keys"][algorithm]["base32_derived"]
    step = at // 30
    assert code_at(secret, at, digits=8, algorithm=algorithm) == expected
    # With no drift only the exact step matches; with the default drift the same step is returned.
    assert verify_code(secret, expected, at, digits=8, algorithm=algorithm, period=30, drift=0) == step
    assert verify_code(secret, expected, at, digits=8, algorithm=algorithm, period=30, drift=1) == step
    # One digit off is refused.
    wrong = expected[:-1] + str((int(expected[-1]) + 1) % 10)
    assert verify_code(secret, wrong, at, digits=8, algorithm=algorithm, drift=1) is None
    # The same code is refused two steps later (outside a one-step window).
    assert verify_code(secret, expected, at + 60, digits=8, algorithm=algorithm, drift=1) is None


def test_rfc6238_sha256_and_sha512_need_their_own_seeds() -> None:
    """The 20-byte seed with SHA-256/512 gives codes that do not match the RFC table."""
    for case in rfc6238()["cases"]:
        if case["mode"] == "SHA1":
            continue
        assert verify_code(SEED, case["totp"], case["time"], digits=8, algorithm=case["mode"], drift=0) is None


@pytest.mark.parametrize(
    "case", vector_cases(RFC4226_FILE, lambda data: data["cases"], ids=lambda c: f"count{c['count']}")
)
def test_rfc4226_appendix_d_counters(case: dict[str, object]) -> None:
    """A TOTP time step is an HOTP counter: the RFC 4226 table through the same code path."""
    secret = load_vectors(RFC4226_FILE)["key"]["base32_derived"]
    assert code_for_step(secret, int(str(case["count"])), digits=6) == case["hotp"]


def test_six_digit_rfc_rows_keep_leading_zeros() -> None:
    vector = next(v for v in otpauth()["code_vectors"] if v["id"] == "pyotp-rfc-sha1-6digit")
    for at, expected in vector["codes_at_time"].items():
        assert code_at(vector["secret_base32"], int(at), digits=6) == expected
        assert verify_code(vector["secret_base32"], expected, int(at), drift=0) == int(at) // 30
    assert code_at(SEED, 1234567890) == "005924"


def test_window_edges() -> None:
    now = 1_800_000_015.0  # mid-step
    step = int(now // 30)
    for offset, accepted_step in ((-30, step - 1), (0, step), (30, step + 1)):
        code = code_at(SEED, now + offset)
        assert verify_code(SEED, code, now, drift=1) == accepted_step
    for offset in (-60, 60):
        assert verify_code(SEED, code_at(SEED, now + offset), now, drift=1) is None
    # drift 0 accepts only the current step; drift 2 reaches two steps either side.
    assert verify_code(SEED, code_at(SEED, now - 30), now, drift=0) is None
    assert verify_code(SEED, code_at(SEED, now + 60), now, drift=2) == step + 2
    assert verify_code(SEED, code_at(SEED, now + 90), now, drift=2) is None


def test_step_boundaries_follow_the_period() -> None:
    boundary = 1_800_000_000 - 1_800_000_000 % 60  # a multiple of 30 and 60
    code = code_at(SEED, boundary)
    assert code != code_at(SEED, boundary - 1)
    assert verify_code(SEED, code, boundary + 29.999, drift=0) == boundary // 30
    assert verify_code(SEED, code, boundary + 30, drift=0) is None
    # A 60-second period keeps one code for the whole minute.
    code60 = code_at(SEED, boundary, period=60)
    assert verify_code(SEED, code60, boundary + 59, period=60, drift=0) == boundary // 60


FULLWIDTH_DIGITS = "\uff11\uff12\uff13\uff14\uff15\uff16"


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12a456", "12 456", FULLWIDTH_DIGITS, "-12345", "+12345"])
def test_malformed_codes_match_nothing(code: str) -> None:
    assert verify_code(SEED, code, 1_800_000_000) is None


def test_other_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="digits"):
        verify_code(SEED, "123456", 0, digits=5)
    with pytest.raises(ValueError, match="digits"):
        verify_code(SEED, "1234567890", 0, digits=10)
    with pytest.raises(ValueError, match="algorithm"):
        verify_code(SEED, "123456", 0, algorithm="MD5")
    with pytest.raises(ValueError, match="period"):
        verify_code(SEED, "123456", 0, period=5)
    with pytest.raises(ValueError, match="drift"):
        verify_code(SEED, "123456", 0, drift=3)
    with pytest.raises(ValueError, match="epoch"):
        verify_code(SEED, "123456", -30)


def test_steps_before_the_epoch_are_skipped() -> None:
    # At t=10 the window is steps -1..1; step -1 does not exist and must not raise.
    assert verify_code(SEED, code_at(SEED, 0), 10, drift=1) == 0
    assert verify_code(SEED, code_at(SEED, 30), 10, drift=1) == 1


# --- policy: secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["SHA1", "SHA256", "SHA512"])
def test_generated_secrets_are_long_random_and_unpadded(algorithm: str) -> None:
    secrets_seen = {generate_secret(algorithm) for _ in range(200)}
    assert len(secrets_seen) == 200
    for secret in secrets_seen:
        assert "=" not in secret and secret == secret.upper()
        key = decode_secret(secret)
        assert len(key) == SECRET_BYTES[algorithm]
        assert len(key) * 8 >= 160


def test_the_plugin_never_generates_short_secrets() -> None:
    assert min(SECRET_BYTES.values()) * 8 >= 160
    assert generate_secret.__defaults__ == ("SHA1",)
    assert len(decode_secret(generate_secret())) * 8 == 160
    with pytest.raises(ValueError, match="algorithm"):
        generate_secret("SHA224")


@pytest.mark.parametrize(
    "short_secret",
    [
        "JBSWY3DPEHPK3PXP",  # the Key-Uri-Format wiki's example, 80 bits
        "wrn3pqx5uqxqvnqr",  # pyotp's Google Authenticator example, 80 bits
        "ABCDEFGH",  # 40 bits
        "GEZDGNBV",  # 40 bits
        "FFFFFFFAAAAAABBBBBBB",  # 100 bits
        base64.b32encode(b"x" * 15).decode(),  # 120 bits: still under 128
    ],
)
def test_short_secrets_are_refused(short_secret: str) -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_SECRET_BITS}"):
        decode_secret(short_secret)
    with pytest.raises(ValueError, match=f"at least {MIN_SECRET_BITS}"):
        verify_code(short_secret, "123456", 1_800_000_000)


def test_a_128_bit_secret_is_the_minimum_accepted() -> None:
    secret = base64.b32encode(b"k" * 16).decode().rstrip("=")
    assert len(decode_secret(secret)) == 16
    assert verify_code(secret, code_at(secret, 1_800_000_000), 1_800_000_000) == 1_800_000_000 // 30


def test_lower_case_and_padded_secrets_decode_alike() -> None:
    assert decode_secret(SEED.lower()) == decode_secret(SEED)
    padded = rfc6238()["keys"]["SHA256"]["base32_derived"]
    assert decode_secret(padded) == decode_secret(padded.rstrip("="))
    with pytest.raises(ValueError, match="base32"):
        decode_secret("not base32!")


# --- policy: otpauth URIs ----------------------------------------------------------------------


def test_built_uri_carries_issuer_account_and_parameters() -> None:
    secret = generate_secret("SHA256")
    uri = build_otpauth_uri(
        secret, account="alice@example.com", issuer="Example Co", digits=8, algorithm="SHA256", period=60
    )
    parsed = urlparse(uri)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp"
    assert parsed.path == "/Example%20Co:alice%40example.com"
    query = parse_qs(parsed.query)
    assert query == {
        "secret": [secret],
        "issuer": ["Example Co"],
        "algorithm": ["SHA256"],
        "digits": ["8"],
        "period": ["60"],
    }
    key = parse_otpauth_uri(uri)
    assert (key.secret, key.account, key.issuer, key.digits, key.algorithm, key.period) == (
        secret,
        "alice@example.com",
        "Example Co",
        8,
        "SHA256",
        60,
    )
    assert key.code_at(1_800_000_000) == code_at(secret, 1_800_000_000, digits=8, algorithm="SHA256", period=60)


def test_default_parameters_are_left_out_of_the_uri() -> None:
    uri = build_otpauth_uri(SEED, account="bob", issuer="stepup")
    assert set(parse_qs(urlparse(uri).query)) == {"secret", "issuer"}
    assert parse_otpauth_uri(uri).label == "stepup:bob"


def test_valid_vector_uris_with_long_secrets_parse() -> None:
    case = next(v for v in otpauth()["valid_uris"] if v["id"] == "gauth-wiki-all-params")
    key = parse_otpauth_uri(case["uri"])
    expected = case["expected"]
    assert key.issuer == expected["issuer"]
    assert key.account == expected["account"]
    assert key.secret == expected["secret_base32"]
    assert (key.digits, key.algorithm, key.period) == (expected["digits"], expected["algorithm"], expected["period"])


def test_vector_labels_parse_when_the_secret_is_long_enough() -> None:
    """The label cases of the vectors, with their short secrets swapped for a 160-bit one."""
    checked = 0
    for case in otpauth()["valid_uris"]:
        expected = case["expected"]
        if expected["type"] != "totp" or "account" not in expected:
            continue
        query = parse_qs(urlparse(case["uri"]).query)
        uri = case["uri"].replace(f"secret={query['secret'][0]}", f"secret={SEED}")
        key = parse_otpauth_uri(uri)
        assert key.account == expected["account"], case["id"]
        assert key.issuer == expected.get("issuer"), case["id"]
        checked += 1
    assert checked == 5


def test_vector_uris_with_short_secrets_are_refused() -> None:
    refused = 0
    for case in otpauth()["valid_uris"]:
        secret = parse_qs(urlparse(case["uri"]).query)["secret"][0]
        if len(base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))) * 8 >= MIN_SECRET_BITS:
            continue
        with pytest.raises(ValueError):
            parse_otpauth_uri(case["uri"])
        refused += 1
    assert refused == 10  # every vector URI except the wiki's all-parameters example


@pytest.mark.parametrize(
    "case", vector_cases(OTPAUTH_FILE, lambda data: data["invalid_uris"], ids=lambda c: c["pyotp_error"][:30])
)
def test_invalid_vector_uris_are_refused(case: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="not an acceptable otpauth URI"):
        parse_otpauth_uri(case["uri"])


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        (f"otpauth://totp/x:y?secret={SEED}&algorithm=SHA1&algorithm=SHA256", "Duplicate algorithm"),
        (f"otpauth://totp/x:y?secret={SEED}&secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJZ", "Duplicate secret"),
        (f"otpauth://totp/x:y?secret={SEED}&period=30&period=60", "Duplicate period"),
        (f"otpauth://hotp/x:y?secret={SEED}&counter=0", "only otpauth://totp/"),
        (f"otpauth://totp/x:y?secret={SEED}&encoder=steam", "only otpauth://totp/"),
        (f"otpauth://totp/x:y?secret={SEED}&period=10", "period"),
        (f"otpauth://totp/x:y?secret={SEED}&digits=9", "Digits"),
        ("otpauth://totp/x:y?secret=JBSWY3DPEHPK3PXP&issuer=x", "112 bits"),
        (f"otpauth://totp/x:y?secret={base64.b32encode(b'y' * 15).decode()}", "at least 128"),
    ],
)
def test_policy_refuses_uris(uri: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_otpauth_uri(uri)
