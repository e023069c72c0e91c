"""Text Postgres cannot store (NUL, lone surrogates) is refused at the edge, naming the field."""

from __future__ import annotations

import json

import pytest

from fundhub.bank_simulator.notifications import TransferSpec, biz_content
from fundhub.bank_transfers.notification import (
    NotifyRejected,
    check_public_params,
    parse_transfer_biz_content,
)


def _biz(**changes: object) -> str:
    biz = json.loads(biz_content(TransferSpec(record_id="r1", in_acct_no="100", trans_amount=1)))
    biz.update(changes)
    return json.dumps(biz)


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"])
def test_biz_field_with_unstorable_text_is_refused(bad: str) -> None:
    with pytest.raises(NotifyRejected, match=r"biz_content\.in_acct_name: contains NUL"):
        parse_transfer_biz_content(_biz(in_acct_name=bad))


def test_store_name_with_nul_is_refused() -> None:
    stores = json.dumps([{"store_id": "S1", "store_name": "x\x00"}])
    with pytest.raises(NotifyRejected, match=r"store_list\[0\].store_name: contains NUL"):
        parse_transfer_biz_content(_biz(store_list=stores))


def test_public_parameter_with_nul_is_refused() -> None:
    params = {
        "app_id": "a", "method": "m", "format": "json", "charset": "utf-8", "sign_type": "RSA2",
        "timestamp": "2026-11-21 08:00:00", "version": "1.0", "sign": "s", "biz_content": "{}",
        "extra": "x\x00",
    }  # fmt: skip
    with pytest.raises(NotifyRejected, match="contains NUL"):
        check_public_params(params)
