"""Issue 9's defects at the gateway, through the real stack: each test failed before its fix."""

from __future__ import annotations

import json

from support.ledger import counts

from e2e.conftest import Stack
from fundhub.bank_simulator.notifications import TransferSpec, build_notification


async def test_a_stored_app_that_excludes_biz_content_verifies_nothing(stack: Stack) -> None:
    """Defect 2, defence in depth: a row stored before the CLI refused it (or by hand) that
    leaves ``biz_content`` unsigned would let one signature authorise any credit."""
    app_id = "20990101000000000000000003"
    await stack.env.pool.execute(
        "INSERT INTO bank_apps (app_id, public_key_pem, sign_excludes) VALUES ($1, $2, $3)",
        app_id,
        stack.env.bank.public_pem,
        ["sign", "biz_content"],
    )
    excludes = ("sign", "biz_content")
    notice = build_notification(
        TransferSpec(record_id="unsafe-1", in_acct_no="6222000555901", trans_amount=100),
        app_id,
        stack.env.bank.private_pem,
        excludes=excludes,
    )
    biz = json.loads(notice["biz_content"])
    biz["trans_amount"] = "99999999"
    notice["biz_content"] = json.dumps(biz)
    before = await counts(stack.env.pool)
    response = await stack.post(notice)
    assert response.status_code == 401 and response.text.startswith("fail"), response.text
    assert await counts(stack.env.pool) == before
