"""The worked signing example in README.md, so the documentation cannot drift from the code."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from fundhub.common.signing import sign_api_request

README = Path(__file__).resolve().parents[2] / "README.md"
EXPECTED = "91c65d62d12cc3661410c68020db4af1cf0daa4de9af225ebd46c1979c57a638"


def test_readme_worked_example_matches_the_code() -> None:
    query = [("limit", "2"), ("cursor", "cDoxMDA")]
    path = "/v1/accounts/15489516846/transactions"
    signature = sign_api_request(
        "s3cr3t-example-only", "GET", path, query, "1795939200", "n0nce-4f1c2a9e7b3d4c1a", b""
    )
    by_hand = hmac.new(
        b"s3cr3t-example-only",
        (
            f"GET\n{path}\ncursor=cDoxMDA&limit=2\n1795939200\nn0nce-4f1c2a9e7b3d4c1a\n"
            + hashlib.sha256(b"").hexdigest()
        ).encode(),
        hashlib.sha256,
    ).hexdigest()
    assert signature == by_hand == EXPECTED
    assert EXPECTED in README.read_text(encoding="utf-8")
