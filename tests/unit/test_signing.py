"""RSA2 (bank) and HMAC-SHA256 (our API) signatures, checked against independent computations."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from support.seed import seed_public_params

from fundhub.common.signing import (
    api_signature,
    api_string_to_sign,
    body_signature,
    canonical_query,
    generate_rsa_keypair,
    load_private_key,
    load_public_key,
    rsa2_sign,
    rsa2_signing_string,
    rsa2_verify,
    sign_api_request,
    verify_hex_signature,
    webhook_signature,
)

# --- worked example (the README quotes it) ------------------------------------------------

EXAMPLE_SECRET = "fundhub-example-secret"
EXAMPLE_METHOD = "post"
EXAMPLE_PATH = "/v1/payouts"
EXAMPLE_QUERY = [("b", "2"), ("a", "x y"), ("a", "1")]
EXAMPLE_TIMESTAMP = "2026-11-21T08:00:00Z"
EXAMPLE_NONCE = "4f1c2a9e7b3d4c1a"
EXAMPLE_BODY = b'{"accountId":"acc-1","amount":100}'
EXAMPLE_SIGNATURE = "2e8f0e1d47ac7c25db68a5bebadf51c7fe817ab7ede20bc412e591ab60f05a7d"


def test_worked_example_matches_an_independent_hmac() -> None:
    body_hash = hashlib.sha256(EXAMPLE_BODY).hexdigest()
    assert body_hash == "9de24df04861e3e629c923e8b0ad7c3f9209f50860a7cb1585405662a895fee2"
    string_to_sign = (
        f"POST\n/v1/payouts\na=1&a=x%20y&b=2\n{EXAMPLE_TIMESTAMP}\n{EXAMPLE_NONCE}\n{body_hash}"
    )
    expected = hmac.new(
        EXAMPLE_SECRET.encode(), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()
    assert expected == EXAMPLE_SIGNATURE

    assert canonical_query(EXAMPLE_QUERY) == "a=1&a=x%20y&b=2"
    assert (
        api_string_to_sign(
            EXAMPLE_METHOD,
            EXAMPLE_PATH,
            "a=1&a=x%20y&b=2",
            EXAMPLE_TIMESTAMP,
            EXAMPLE_NONCE,
            EXAMPLE_BODY,
        )
        == string_to_sign
    )
    assert api_signature(EXAMPLE_SECRET, string_to_sign) == expected
    signature = sign_api_request(
        EXAMPLE_SECRET,
        EXAMPLE_METHOD,
        EXAMPLE_PATH,
        EXAMPLE_QUERY,
        EXAMPLE_TIMESTAMP,
        EXAMPLE_NONCE,
        EXAMPLE_BODY,
    )
    print(f"worked example signature: {signature}")
    assert signature == expected


def test_string_to_sign_with_empty_query_and_body() -> None:
    empty_hash = hashlib.sha256(b"").hexdigest()
    assert (
        api_string_to_sign("get", "/v1/balances/acc-1", "", "t", "n", b"")
        == f"GET\n/v1/balances/acc-1\n\nt\nn\n{empty_hash}"
    )


def test_signature_changes_with_every_input() -> None:
    def sign(**change: object) -> str:
        args: dict[str, object] = {
            "secret": EXAMPLE_SECRET,
            "method": "POST",
            "path": EXAMPLE_PATH,
            "query_pairs": EXAMPLE_QUERY,
            "timestamp": EXAMPLE_TIMESTAMP,
            "nonce": EXAMPLE_NONCE,
            "body": EXAMPLE_BODY,
            **change,
        }
        return sign_api_request(**args)  # type: ignore[arg-type]

    assert sign() == EXAMPLE_SIGNATURE
    signatures = {
        sign(secret="other"),
        sign(method="PUT"),
        sign(path="/v1/payouts/x"),
        sign(query_pairs=[("a", "1")]),
        sign(timestamp="2026-11-21T08:00:01Z"),
        sign(nonce="other"),
        sign(body=EXAMPLE_BODY + b" "),
    }
    assert EXAMPLE_SIGNATURE not in signatures
    assert len(signatures) == 7


# --- canonical query -----------------------------------------------------------------------


def test_canonical_query_empty() -> None:
    assert canonical_query([]) == ""


def test_canonical_query_encodes_per_rfc3986() -> None:
    assert canonical_query([("q", "AZaz09-._~")]) == "q=AZaz09-._~"
    assert canonical_query([("q", "a b+c/d=e&f*g%")]) == "q=a%20b%2Bc%2Fd%3De%26f%2Ag%25"
    assert canonical_query([("name", "中é")]) == "name=%E4%B8%AD%C3%A9"
    assert canonical_query([("a key", "")]) == "a%20key="


def test_canonical_query_sorts_by_name_then_value() -> None:
    pairs = [("b", "1"), ("a", "2"), ("a", "10"), ("A", "z")]
    assert canonical_query(pairs) == "A=z&a=10&a=2&b=1"


# --- hex comparisons and response/webhook signatures ---------------------------------------


def test_verify_hex_signature() -> None:
    assert verify_hex_signature(EXAMPLE_SIGNATURE, EXAMPLE_SIGNATURE)
    assert not verify_hex_signature(EXAMPLE_SIGNATURE, EXAMPLE_SIGNATURE.upper())
    assert not verify_hex_signature(EXAMPLE_SIGNATURE, EXAMPLE_SIGNATURE[:-1])
    assert not verify_hex_signature(EXAMPLE_SIGNATURE, "")
    assert not verify_hex_signature(EXAMPLE_SIGNATURE, "é" * 64)


def test_body_and_webhook_signatures() -> None:
    key = EXAMPLE_SECRET.encode()
    assert body_signature(EXAMPLE_SECRET, EXAMPLE_BODY) == (
        hmac.new(key, EXAMPLE_BODY, hashlib.sha256).hexdigest()
    )
    assert webhook_signature(EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_BODY) == (
        hmac.new(key, f"{EXAMPLE_TIMESTAMP}.".encode() + EXAMPLE_BODY, hashlib.sha256).hexdigest()
    )
    assert webhook_signature(EXAMPLE_SECRET, "1", EXAMPLE_BODY) != webhook_signature(
        EXAMPLE_SECRET, "2", EXAMPLE_BODY
    )


# --- RSA2 ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keypair() -> tuple[str, str]:
    return generate_rsa_keypair()


# The seed's public parameters, an empty one (left out of the signing string) and a short
# biz_content.
NOTIFY_PARAMS = {
    **seed_public_params(),
    "app_auth_token": "",
    "biz_content": '{"record_id":"1234","remark":"备注"}',
}


def test_signing_string_sorts_and_skips_empty_and_excluded() -> None:
    params = {"b": "2", "a": "1", "sign": "xx", "empty": "", "none": None, "c": "中"}
    assert rsa2_signing_string(params) == "a=1&b=2&c=中".encode()
    assert rsa2_signing_string(params, excludes=("sign", "b")) == "a=1&c=中".encode()
    assert rsa2_signing_string(params, excludes=()) == "a=1&b=2&c=中&sign=xx".encode()


def test_signing_string_refuses_non_strings() -> None:
    with pytest.raises(TypeError):
        rsa2_signing_string({"amount": 100})


def test_generated_keypair_shapes(keypair: tuple[str, str]) -> None:
    private_pem, public_pem = keypair
    assert private_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert load_private_key(private_pem).key_size == 2048
    assert load_public_key(public_pem).key_size == 2048


def test_rsa2_round_trip(keypair: tuple[str, str]) -> None:
    private_pem, public_pem = keypair
    signature = rsa2_sign(NOTIFY_PARAMS, private_pem)
    assert len(signature) == 344
    signed = {**NOTIFY_PARAMS, "sign": signature}
    assert rsa2_verify(signed, signature, load_public_key(public_pem))
    assert rsa2_sign(NOTIFY_PARAMS, private_pem.encode()) == signature  # deterministic PKCS#1 v1.5


def test_rsa2_matches_an_independent_signature(keypair: tuple[str, str]) -> None:
    """Sign the documented string directly with cryptography; our verifier must accept it."""
    private_pem, public_pem = keypair
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    text = (
        "app_id=20210911888888888888888888&biz_content="
        '{"record_id":"1234","remark":"备注"}'
        "&charset=utf-8&format=json&method=bkfunds.acct.transfer.notify"
        "&sign_type=RSA2&timestamp=2024-04-29 17:14:51&version=1.0"
    )
    raw = key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    signature = base64.b64encode(raw).decode()
    assert rsa2_verify(NOTIFY_PARAMS, signature, load_public_key(public_pem))
    assert rsa2_sign(NOTIFY_PARAMS, private_pem) == signature


def test_rsa2_verify_refuses_tampering_and_garbage(keypair: tuple[str, str]) -> None:
    private_pem, public_pem = keypair
    public_key = load_public_key(public_pem)
    signature = rsa2_sign(NOTIFY_PARAMS, private_pem)
    assert not rsa2_verify(
        {**NOTIFY_PARAMS, "timestamp": "2024-04-29 17:14:52"}, signature, public_key
    )
    assert not rsa2_verify({**NOTIFY_PARAMS, "extra": "x"}, signature, public_key)
    assert not rsa2_verify(NOTIFY_PARAMS, "not base64!!", public_key)
    assert not rsa2_verify(NOTIFY_PARAMS, "中文", public_key)
    assert not rsa2_verify(NOTIFY_PARAMS, "", public_key)
    assert not rsa2_verify(NOTIFY_PARAMS, base64.b64encode(b"short").decode(), public_key)
    _, other_public = generate_rsa_keypair()
    assert not rsa2_verify(NOTIFY_PARAMS, signature, load_public_key(other_public))


def test_rsa2_verify_with_custom_excludes(keypair: tuple[str, str]) -> None:
    private_pem, public_pem = keypair
    excludes = ("sign", "sign_type")
    signature = rsa2_sign(NOTIFY_PARAMS, private_pem, excludes=excludes)
    changed = {**NOTIFY_PARAMS, "sign_type": "anything"}
    assert rsa2_verify(changed, signature, load_public_key(public_pem), excludes=excludes)
    assert not rsa2_verify(changed, signature, load_public_key(public_pem))


def test_load_public_key_is_cached_and_accepts_bare_base64(keypair: tuple[str, str]) -> None:
    _, public_pem = keypair
    assert load_public_key(public_pem) is load_public_key(public_pem)
    bare = "".join(line for line in public_pem.splitlines() if not line.startswith("-----"))
    assert load_public_key(bare).public_numbers() == load_public_key(public_pem).public_numbers()


def test_loaders_refuse_other_keys() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_public = (
        ec_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    ec_private = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError):
        load_public_key(ec_public)
    with pytest.raises(ValueError):
        load_private_key(ec_private)
    with pytest.raises(ValueError):
        load_public_key("not a key")
    with pytest.raises(ValueError):
        load_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
