"""The pure rules of a key's life: which secret is valid when, environments, expiry, sealing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fundhub.access.keys import (
    LIVE,
    SANDBOX,
    ApiKey,
    InvalidKeySpec,
    RetiringSecret,
    environment_served_by,
    key_state,
    parse_duration,
    parse_environment,
    parse_expiry,
)
from fundhub.common.cache import TtlCache
from fundhub.common.sealing import (
    SealingError,
    generate_master_key,
    seal,
    sealed_by,
    unseal,
)
from fundhub.common.signing import api_signature

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MESSAGE = "GET\n/v1/accounts/A1/balance\n\n1700000000\nnonce-nonce-nonce\nabc"


def key(**overrides: object) -> ApiKey:
    base: dict[str, object] = {
        "key_id": "ak_1",
        "secret": "new-secret",
        "scopes": frozenset({"balance:read"}),
        "accounts": frozenset({"*"}),
    }
    base.update(overrides)
    return ApiKey(**base)  # type: ignore[arg-type]


def test_both_secrets_verify_during_the_overlap_and_only_the_new_one_after() -> None:
    rotated = key(retiring=(RetiringSecret("old-secret", NOW + timedelta(hours=24)),))
    old_sig = api_signature("old-secret", MESSAGE)
    new_sig = api_signature("new-secret", MESSAGE)
    during = NOW + timedelta(hours=23)
    after = NOW + timedelta(hours=24)

    signer = rotated.signed_by(MESSAGE, old_sig, during)
    assert signer is not None and signer.secret == "old-secret"  # answers signed with it too
    assert rotated.signed_by(MESSAGE, new_sig, during) is rotated
    assert rotated.signed_by(MESSAGE, old_sig, after) is None
    assert rotated.signed_by(MESSAGE, new_sig, after) is rotated
    assert rotated.signed_by(MESSAGE, api_signature("other", MESSAGE), during) is None
    assert rotated.secrets_valid_at(after) == ["new-secret"]


def test_secrets_stay_out_of_repr() -> None:
    rotated = key(retiring=(RetiringSecret("old-secret", NOW),))
    assert "secret" not in repr(rotated).replace("secret=", "")


@pytest.mark.parametrize(
    ("service_env", "key_env", "usable"),
    [
        ("prod", LIVE, True),
        ("prod", SANDBOX, False),
        ("dev", SANDBOX, True),
        ("dev", LIVE, False),
        ("test", SANDBOX, True),
        ("test", LIVE, False),
    ],
)
def test_a_key_is_usable_only_in_its_own_environment(
    service_env: str, key_env: str, usable: bool
) -> None:
    assert key(environment=key_env).usable(NOW, environment_served_by(service_env)) is usable


def test_an_expired_key_is_unusable_from_its_expiry_on() -> None:
    expiring = key(expires_at=NOW)
    assert expiring.usable(NOW - timedelta(seconds=1), SANDBOX)
    assert not expiring.usable(NOW, SANDBOX)
    assert key().usable(NOW + timedelta(days=3650), SANDBOX)


def test_key_state_revoked_wins_over_expired() -> None:
    assert key_state(None, None, NOW) == "active"
    assert key_state(None, NOW + timedelta(1), NOW) == "active"
    assert key_state(None, NOW, NOW) == "expired"
    assert key_state(NOW, NOW - timedelta(1), NOW) == "revoked"


def test_durations_and_expiry() -> None:
    assert parse_duration("24h", "--overlap") == timedelta(hours=24)
    assert parse_duration("0s", "--overlap") == timedelta(0)
    assert parse_duration("30d", "--x") == timedelta(days=30)
    for bad in ("", "24", "1w", "-1h", "1.5h", "h"):
        with pytest.raises(InvalidKeySpec, match="--overlap"):
            parse_duration(bad, "--overlap")
    assert parse_expiry("90d", None, NOW) == NOW + timedelta(days=90)
    assert parse_expiry(None, "2027-01-31T00:00:00Z", NOW) == datetime(2027, 1, 31, tzinfo=UTC)
    assert parse_expiry(None, None, NOW) is None
    with pytest.raises(InvalidKeySpec, match="not both"):
        parse_expiry("1d", "2027-01-31T00:00:00Z", NOW)
    with pytest.raises(InvalidKeySpec, match="past"):
        parse_expiry(None, "2020-01-01T00:00:00Z", NOW)
    with pytest.raises(InvalidKeySpec, match="time zone"):
        parse_expiry(None, "2027-01-31T00:00:00", NOW)
    with pytest.raises(InvalidKeySpec, match="ISO 8601"):
        parse_expiry(None, "tomorrow", NOW)
    assert parse_environment(" Live ") == LIVE
    with pytest.raises(InvalidKeySpec):
        parse_environment("prod")


def test_a_blob_names_its_master_key_and_opens_under_current_or_previous() -> None:
    old, new, stranger = generate_master_key(), generate_master_key(), generate_master_key()
    blob = seal(b"s3cret", old)
    assert sealed_by(blob, old) and not sealed_by(blob, new)
    assert unseal(blob, [new, old]) == b"s3cret"  # a rollout: new key first, previous after
    assert unseal(seal(b"x", [new, old]), new) == b"x"  # seals under the first
    with pytest.raises(SealingError):
        unseal(blob, [new, stranger])
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(SealingError):
        unseal(tampered, old)


def test_version_1_blobs_stay_readable() -> None:
    """Blobs sealed before key ids (version 1: no key id, AAD = the version byte)."""
    import base64
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    old, new = generate_master_key(), generate_master_key()
    nonce = os.urandom(12)
    blob = b"\x01" + nonce + AESGCM(base64.b64decode(old)).encrypt(nonce, b"legacy", b"\x01")
    assert unseal(blob, [new, old]) == b"legacy"
    with pytest.raises(SealingError):
        unseal(blob, new)


async def test_a_dropped_entry_is_not_brought_back_by_a_load_under_way() -> None:
    """A revocation heard while the key was being loaded must not leave the old copy cached."""
    cache: TtlCache[str, str] = TtlCache(60)
    loads = 0

    async def load(_: str) -> str:
        nonlocal loads
        loads += 1
        if loads == 1:
            cache.drop("k")  # the NOTIFY arrives while the SELECT is under way
        return f"v{loads}"

    assert await cache.get("k", load) == "v1"
    assert await cache.get("k", load) == "v2"  # not kept: loaded again
    assert await cache.get("k", load) == "v2"
