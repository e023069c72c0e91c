"""Alipay's trade bill of a day, fetched the way Alipay serves it: the gateway's signed
``alipay.data.dataservice.bill.downloadurl.query`` answers a ``bill_download_url`` (valid for
30 seconds), whose ``GET`` gives the zip. The answer is taken only once it verifies under
Alipay's public key; Alipay gives no hash of the zip, whose CRCs the parser checks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

import aiohttp

from fundhub.channels import alipay
from fundhub.channels.apps import AlipayKeys
from fundhub.common.clock import utcnow
from fundhub.reconciliation.download_answers import check_downloaded, refusal
from fundhub.reconciliation.download_http import (
    BAD_FILE,
    MAX_DOWNLOAD_BYTES,
    REFUSED,
    UNAVAILABLE,
    StatementUnavailable,
    check_download_url,
    excerpt,
    exchange,
)

BILL_URL_QUERY = "alipay.data.dataservice.bill.downloadurl.query"
BILL_NOT_EXIST = "isp.bill_not_exist"
SUCCESS = "10000"
_ZIP_MAGIC = b"PK\x03\x04"


async def fetch_alipay_bill(
    session: aiohttp.ClientSession,
    gateway_url: str,
    keys: AlipayKeys,
    day: date,
    *,
    timeout_s: float = 60.0,
    clock: Callable[[], datetime] = utcnow,
) -> bytes:
    """The bill zip of ``day`` (the app of ``keys``), or ``StatementUnavailable`` (NOT_READY
    before Alipay has published it)."""
    if keys.app_private_key is None:
        raise StatementUnavailable(REFUSED, f"app {keys.app.app_id} has no app private key")
    params = alipay.request_params(
        keys.app.app_id,
        BILL_URL_QUERY,
        {"bill_type": "trade", "bill_date": day.isoformat()},
        keys.app_private_key,
        clock(),
    )
    status, _, body = await exchange(session, "POST", gateway_url, timeout_s=timeout_s, data=params)
    if status != 200:
        raise StatementUnavailable(UNAVAILABLE, f"HTTP {status}: {excerpt(body)}")
    try:
        answer = alipay.read_answer(body, BILL_URL_QUERY)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StatementUnavailable(UNAVAILABLE, f"unreadable answer ({exc})") from None
    if not answer.verifies(keys.alipay_public_key):
        raise StatementUnavailable(
            UNAVAILABLE, f"code {answer.code}: the signature does not verify"
        )
    if answer.code != SUCCESS:
        sub_code = str(answer.node.get("sub_code") or answer.code)
        message = str(answer.node.get("sub_msg") or answer.node.get("msg") or "")
        raise refusal(sub_code, message, BILL_NOT_EXIST)
    url = answer.node.get("bill_download_url")
    if not isinstance(url, str):
        raise StatementUnavailable(REFUSED, "an answer without bill_download_url")
    check_download_url(url, gateway_url, any_https=True)
    status, _, content = await exchange(
        session, "GET", url, timeout_s=timeout_s, limit=MAX_DOWNLOAD_BYTES
    )
    check_downloaded(status, content)
    if not content.startswith(_ZIP_MAGIC):
        raise StatementUnavailable(BAD_FILE, "the download is not a zip")
    return content
