"""The seed's transfer notification (seeds/bank-transfer-notify.txt) as the tests restate it:
written out here once, from the seed, never derived from the product code it checks."""

from __future__ import annotations

import json
from typing import Any

# The request example of seeds/bank-transfer-notify.txt, verbatim.
SEED_REQUEST = r"""{"app_id": "20210911888888888888888888","method": "bkfunds.acct.transfer.notify","version": "1.0","charset": "utf-8","format": "json","sign_type": "RSA2","timestamp": "2024-04-29 17:14:51","biz_content": "{\"channel\":\"02\",\"node_id\":\"00026713\",\"record_id\":\"1234\",\"trans_time\":\"2025-06-01 15:20:33\",\"channel_trade_no\":\"10000000001\",\"merchant_name\":\"商户名称\",\"merchant_id\":\"10000000123\",\"cloud_merchant_id\":\"4204564615348\",\"in_acct_name\":\"收款方账户户名\",\"in_acct_bank_name\":\"xxxx银行\",\"in_acct_no\":\"15489516846\",\"trans_amount\":\"100000\",\"ccy_code\":\"RMB\",\"fee\":\"100\",\"post_fee\":\"100\",\"bind_status\":\"1\",\"deduct_status\":\"6\",\"deduct_channel_trade_no\":\"10000000002\",\"out_acct_name\":\"付款方账户名称\",\"out_acct_bank_name\":\"xxxx银行\",\"out_acct_no\":\"624615616476846548\",\"host_flow_no\":\"300000000001\",\"host_tx_date\":\"2025-06-01\",\"reverse_flag\":\"0\",\"use_ex\":\"资金用途\",\"remark\":\"备注\",\"store_list\":\"[{\\\"store_id\\\":\\\"S0001\\\",\\\"store_name\\\":\\\"门店0001\\\"},{\\\"store_id\\\":\\\"S0002\\\",\\\"store_name\\\":\\\"门店0002\\\"}]\"}}","sign": "XmrZygmCBA56kqWP9TmQ/r/DVDzjOA+wrNvCWpAQXNYycn3El+D4jpw32V4lyN+gPhcnPsHHm6e3uYfnPuYTE8Owjbcs/ZYbndwFc1qv7crywXnrtKcafQkRzEZD0yK+9HmP7lBpgPFA5lKuftq5B0CEAz9eZ4fOxEKUHT6yMGpYBkStTNXA7Er8pefP59cUCzdV31uS4sNnMS0UagjxJWCVWpYtKEG2iHN6yrnSvZVseDIwDLZKtM3ss4umUdvVi40Tem5vaAmNkaGCwLL4peTIRg7eGzWTbQxDhiONQaT+QCW7o/1pjBd1ttMNcQiFachIXYcpGMC3c+YrrgJsVA=="}"""


def seed_request() -> dict[str, Any]:
    """The request example as parameters, as printed (its biz_content not mended): a new dict
    each call, so no test sees another's changes."""
    params: dict[str, Any] = json.loads(SEED_REQUEST)
    return params


def seed_public_params() -> dict[str, Any]:
    """The example's public parameters: all of it but ``biz_content`` and ``sign``."""
    return {k: v for k, v in seed_request().items() if k not in {"biz_content", "sign"}}


# The biz_content fields the seed marks required.
REQUIRED_BIZ = (
    "channel",
    "node_id",
    "record_id",
    "trans_time",
    "channel_trade_no",
    "in_acct_name",
    "in_acct_no",
    "trans_amount",
    "ccy_code",
    "bind_status",
    "deduct_status",
    "out_acct_name",
    "out_acct_no",
    "host_flow_no",
    "host_tx_date",
)
