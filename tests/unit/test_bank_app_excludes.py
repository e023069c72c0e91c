"""Defect 2 of issue 9: a bank app may leave only ``sign`` and ``sign_type`` out of the signature."""

from __future__ import annotations

import pytest

from fundhub.bank_transfers.bank_apps import (
    BankApp,
    InvalidBankApp,
    parse_sign_excludes,
    unsafe_sign_excludes,
)
from fundhub.common.signing import generate_rsa_keypair, load_public_key


@pytest.mark.parametrize("name", ["biz_content", "timestamp", "app_id", "method", "version"])
def test_a_signed_parameter_cannot_be_excluded(name: str) -> None:
    with pytest.raises(InvalidBankApp, match=name):
        parse_sign_excludes(f"sign_type,{name}")


def test_sign_and_sign_type_may_be_excluded() -> None:
    assert parse_sign_excludes("sign,sign_type") == ["sign", "sign_type"]
    assert unsafe_sign_excludes(["sign", "sign_type"]) == []


def test_a_stored_app_with_an_unsafe_exclusion_is_not_usable() -> None:
    key = load_public_key(generate_rsa_keypair()[1])
    assert BankApp("a", key, ("sign", "sign_type")).usable
    assert not BankApp("a", key, ("sign", "biz_content")).usable
