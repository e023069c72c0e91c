"""WeChat Pay's trade bill of a day, fetched the way WeChat Pay serves it: a signed
``GET /v3/bill/tradebill`` answers a ``download_url`` and the SHA1 of the bill, a signed
``GET`` of that URL gives the bill (gzip when asked). The answer is taken only once its
``Wechatpay-Signature`` verifies under a platform key of the app; the bill only once its SHA1
(of the bill unpacked) is the one announced.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import date, datetime
from urllib.parse import urlencode, urlsplit

import aiohttp

from fundhub.channels import wechatpay
from fundhub.channels.apps import WechatPayKeys
from fundhub.channels.notification import NotificationRefused
from fundhub.common.clock import utcnow
from fundhub.reconciliation.bill_bytes import GZIP_MAGIC, gunzip
from fundhub.reconciliation.download_answers import check_downloaded, coded_refusal, json_object
from fundhub.reconciliation.download_http import (
    BAD_FILE,
    MAX_DOWNLOAD_BYTES,
    REFUSED,
    UNAVAILABLE,
    StatementUnavailable,
    check_download_url,
    exchange,
)
from fundhub.reconciliation.statement import StatementRejected

TRADEBILL_PATH = "/v3/bill/tradebill"
DOWNLOAD_PATH = "/v3/billdownload/file"
NO_STATEMENT = "NO_STATEMENT_EXIST"
BILL_TYPES = ("ALL", "REFUND")


async def fetch_wechatpay_bill(
    session: aiohttp.ClientSession,
    base_url: str,
    keys: WechatPayKeys,
    day: date,
    *,
    bill_type: str = "ALL",
    gzip: bool = True,
    timeout_s: float = 60.0,
    clock: Callable[[], datetime] = utcnow,
) -> bytes:
    """The bill of ``day`` (the merchant of ``keys``), unpacked and its SHA1 checked; or
    ``StatementUnavailable`` (NOT_READY before WeChat Pay has published it)."""
    if bill_type not in BILL_TYPES:
        raise ValueError(f"bill_type: one of {BILL_TYPES}")
    if keys.merchant_private_key is None or keys.app.merchant_serial is None:
        raise StatementUnavailable(REFUSED, f"app {keys.app.app_id} has no merchant API key")
    base_url = base_url.rstrip("/")
    query = {"bill_date": day.isoformat(), "bill_type": bill_type}
    if gzip:
        query["tar_type"] = "GZIP"
    path = f"{TRADEBILL_PATH}?{urlencode(query)}"
    status, headers, body = await _signed_get(session, base_url, path, keys, timeout_s, clock)
    _verify(keys, headers, body, status, clock)
    answer = json_object(body, status)
    if status >= 400:
        raise coded_refusal(answer, status, NO_STATEMENT)
    url, hash_value = answer.get("download_url"), answer.get("hash_value")
    if (
        not isinstance(url, str)
        or not isinstance(hash_value, str)
        or answer.get("hash_type") != "SHA1"
    ):
        raise StatementUnavailable(REFUSED, "an answer without download_url or a SHA1 hash_value")
    check_download_url(url, base_url)
    parts = urlsplit(url)
    download_path = parts.path + (f"?{parts.query}" if parts.query else "")
    status, _, content = await _signed_get(
        session, base_url, download_path, keys, timeout_s, clock, MAX_DOWNLOAD_BYTES
    )
    check_downloaded(status, content)
    if content[:2] == GZIP_MAGIC:
        try:
            content = gunzip(content, "tradebill")
        except StatementRejected as exc:
            raise StatementUnavailable(BAD_FILE, exc.reason) from None
    if hashlib.sha1(content).hexdigest() != hash_value.lower():
        raise StatementUnavailable(BAD_FILE, "the bill's SHA1 is not the announced hash_value")
    return content


async def _signed_get(
    session: aiohttp.ClientSession,
    base_url: str,
    path: str,
    keys: WechatPayKeys,
    timeout_s: float,
    clock: Callable[[], datetime],
    limit: int | None = None,
) -> tuple[int, dict[str, str], bytes]:
    assert keys.merchant_private_key is not None and keys.app.merchant_serial is not None
    authorization = wechatpay.authorization(
        keys.mchid,
        keys.app.merchant_serial,
        keys.merchant_private_key,
        "GET",
        path,
        b"",
        str(int(clock().timestamp())),
        secrets.token_hex(16).upper(),
    )
    headers = {"Accept": "application/json", "Authorization": authorization}
    if limit is None:
        return await exchange(session, "GET", base_url + path, timeout_s=timeout_s, headers=headers)
    return await exchange(
        session, "GET", base_url + path, timeout_s=timeout_s, headers=headers, limit=limit
    )


def _verify(
    keys: WechatPayKeys,
    headers: dict[str, str],
    body: bytes,
    status: int,
    clock: Callable[[], datetime],
) -> None:
    """The answer counts only when WeChat Pay signed it (a forged one could point anywhere)."""
    try:
        signed = wechatpay.read_signed_headers(headers)
        wechatpay.check_timestamp(signed, clock())
    except NotificationRefused as exc:
        raise StatementUnavailable(
            UNAVAILABLE, f"HTTP {status}: unverifiable ({exc.reason})"
        ) from None
    key = keys.platform_keys.get(signed.serial)
    if key is None or not signed.verifies(body, key):
        raise StatementUnavailable(UNAVAILABLE, f"HTTP {status}: the signature does not verify")
