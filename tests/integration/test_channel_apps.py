"""The channel apps we trust, as an operator registers them (``fundhub channel``) and the gateway
and adapters read them (``ChannelAppStore``, ``active_app``): secrets sealed, serials added and
removed for rotation, one active app per channel, every change audited without a secret, and
the master key's rotation re-sealing them. Real Postgres; keys are TEST keys made per run."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from support.channels import MerchantKeys, cli_add_args
from support.env import BIN, ModuleEnv

from fundhub.channels.apps import ChannelAppStore, active_app, list_apps
from fundhub.channels.events import Channel
from fundhub.common.sealing import generate_master_key, sealed_by
from fundhub.common.signing import generate_rsa_keypair, load_public_key

KEYS = MerchantKeys()


def simulator_keys() -> dict[str, object]:
    """What ``GET /sim/keys`` would say: a platform key and serial, Alipay's key (TEST)."""
    return {
        "wechatpay": {
            "platformSerial": "SERIAL-" + uuid.uuid4().hex[:12].upper(),
            "platformPublicKey": generate_rsa_keypair()[1],
        },
        "alipay": {"alipayPublicKey": generate_rsa_keypair()[1]},
    }


SIM = simulator_keys()


def fundhub(env: ModuleEnv, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "fundhub"), *args],
        env=env.environ(**extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def pem_file(env: ModuleEnv, text: str) -> str:
    path: Path = env.tmp / f"{uuid.uuid4().hex}.pem"
    path.write_text(text)
    return str(path)


def store(env: ModuleEnv, merchant_keys: bool = False) -> ChannelAppStore:
    return ChannelAppStore(
        env.pool, env.settings.master_keys(), ttl_s=0.0, merchant_keys=merchant_keys
    )


async def test_register_both_channels_and_read_them_back(env: ModuleEnv) -> None:
    wechatpay, alipay = cli_add_args(env.tmp, KEYS, SIM)
    shown = json.loads(env.cli(*wechatpay))
    assert shown == {
        "channel": "WECHATPAY",
        "appId": KEYS.appid,
        "merchantRef": KEYS.mchid,
        "active": True,
        "platformSerials": [SIM["wechatpay"]["platformSerial"]],  # type: ignore[index]
        "merchantSerial": KEYS.merchant_serial,
        "canCallApi": True,
    }
    assert json.loads(env.cli(*alipay))["merchantRef"] == KEYS.seller_id

    listed = json.loads(env.cli("channel", "list", "--json"))
    assert {(a["channel"], a["appId"], a["active"]) for a in listed} == {
        ("WECHATPAY", KEYS.appid, True),
        ("ALIPAY", KEYS.alipay_app_id, True),
    }
    text = env.cli("channel", "list")
    assert KEYS.appid in text and KEYS.apiv3_key not in text

    serial = SIM["wechatpay"]["platformSerial"]  # type: ignore[index]
    (found,) = await store(env).wechatpay_by_serial(serial)
    assert found.apiv3_key == KEYS.apiv3_key.encode() and found.mchid == KEYS.mchid
    assert found.merchant_private_key is None  # the gateway's store does not open them
    assert (await store(env).wechatpay_by_serial("NO-SUCH-SERIAL")) == ()
    with_merchant = await store(env, merchant_keys=True).wechatpay(KEYS.appid)
    assert with_merchant is not None and with_merchant.merchant_private_key is not None
    ali = await store(env, merchant_keys=True).alipay(KEYS.alipay_app_id)
    assert ali is not None and ali.seller_id == KEYS.seller_id and ali.app_private_key is not None

    for source in (env.pool, store(env)):
        app = await active_app(source, Channel.WECHATPAY)
        assert app is not None and (app.app_id, app.merchant_ref) == (KEYS.appid, KEYS.mchid)
        alipay_app = await active_app(source, Channel.ALIPAY)
        assert alipay_app is not None and alipay_app.app_id == KEYS.alipay_app_id


async def test_secrets_are_sealed_and_never_audited(env: ModuleEnv) -> None:
    rows = await env.pool.fetch(
        "SELECT apiv3_key_sealed, merchant_private_key_sealed FROM channel_apps"
    )
    master_key = env.settings.master_key
    assert master_key is not None
    for row in rows:
        for blob in (row["apiv3_key_sealed"], row["merchant_private_key_sealed"]):
            if blob is not None:
                assert sealed_by(bytes(blob), master_key)
                assert KEYS.apiv3_key.encode() not in bytes(blob) and b"PRIVATE" not in bytes(blob)
    entries = await env.pool.fetch("SELECT body FROM audit_log WHERE route LIKE 'fundhub channel%'")
    assert len(entries) >= 2
    for entry in entries:
        text = bytes(entry["body"]).decode()
        assert KEYS.apiv3_key not in text and "PRIVATE KEY" not in text and "PUBLIC KEY" not in text


async def test_serials_rotate_and_the_last_one_stays(env: ModuleEnv) -> None:
    first = SIM["wechatpay"]["platformSerial"]  # type: ignore[index]
    new_pem = generate_rsa_keypair()[1]
    added = json.loads(
        env.cli("channel", "add-serial", "--appid", KEYS.appid, "--platform-serial", "NEW-SERIAL-1",
                "--platform-public-key", pem_file(env, new_pem), "--json")
    )  # fmt: skip
    assert added["added"] is True
    (app,) = await store(env).wechatpay_by_serial("NEW-SERIAL-1")
    assert set(app.platform_keys) == {first, "NEW-SERIAL-1"}
    assert (
        app.platform_keys["NEW-SERIAL-1"].public_numbers()
        == load_public_key(new_pem).public_numbers()
    )

    other = fundhub(env, "channel", "add-serial", "--appid", KEYS.appid, "--platform-serial", "NEW-SERIAL-1",
                    "--platform-public-key", pem_file(env, generate_rsa_keypair()[1]))  # fmt: skip
    assert other.returncode == 2 and "another key" in other.stderr

    env.cli("channel", "remove-serial", "--appid", KEYS.appid, "--platform-serial", first)
    assert (await store(env).wechatpay_by_serial(first)) == ()
    last = fundhub(
        env, "channel", "remove-serial", "--appid", KEYS.appid, "--platform-serial", "NEW-SERIAL-1"
    )
    assert last.returncode == 2 and "last platform key" in last.stderr
    unknown = fundhub(
        env, "channel", "remove-serial", "--appid", "wxunknown", "--platform-serial", "X"
    )
    assert unknown.returncode == 2 and "no WeChat Pay app" in unknown.stderr


async def test_one_active_app_per_channel(env: ModuleEnv) -> None:
    second = MerchantKeys()
    wechatpay, _ = cli_add_args(env.tmp, second, simulator_keys())
    env.cli(*[a for a in wechatpay if a != "--json"], "--no-activate")
    app = await active_app(env.pool, Channel.WECHATPAY)
    assert app is not None and app.app_id == KEYS.appid
    env.cli(*wechatpay)  # given again, activated: it takes the new payments now
    app = await active_app(env.pool, Channel.WECHATPAY)
    assert app is not None and app.app_id == second.appid
    actives = [a for a in await list_apps(env.pool) if a.channel is Channel.WECHATPAY and a.active]
    assert [a.app_id for a in actives] == [second.appid]


@pytest.mark.parametrize(
    ("case", "change", "message"),
    [
        ("short APIv3 key", ("--apiv3-key-file", "31"), "APIv3 key"),
        ("appid under another mchid", ("--mchid", "1999999999"), "registered under mchid"),
        ("serial without its key", ("--platform-public-key", None), "in pairs"),
        ("not a public key", ("--platform-public-key", "garbage"), "not a usable RSA public key"),
        ("merchant serial alone", ("--merchant-private-key", None), "together"),
    ],
)
async def test_refusals_change_nothing(
    env: ModuleEnv, case: str, change: tuple[str, str | None], message: str
) -> None:
    before = await env.pool.fetch("SELECT * FROM channel_apps ORDER BY channel, app_id")
    wechatpay, _ = cli_add_args(env.tmp, KEYS, simulator_keys())
    option, value = change
    at = wechatpay.index(option)
    if value is None:
        del wechatpay[at : at + 2]
    elif value == "31":
        wechatpay[at + 1] = pem_file(env, "x" * 31)
    elif value == "garbage":
        wechatpay[at + 1] = pem_file(
            env, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
        )
    else:
        wechatpay[at + 1] = value
    done = fundhub(env, *wechatpay)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr
    assert await env.pool.fetch("SELECT * FROM channel_apps ORDER BY channel, app_id") == before


async def test_master_key_rotation_reseals_channel_secrets(env: ModuleEnv) -> None:
    old = env.settings.master_key
    assert old is not None
    new = generate_master_key()
    done = fundhub(
        env,
        "master-key",
        "rotate",
        "--json",
        FUNDHUB_MASTER_KEY=new,
        FUNDHUB_MASTER_KEY_PREVIOUS=old,
    )
    assert done.returncode == 0, done.stderr
    rows = await env.pool.fetch(
        "SELECT apiv3_key_sealed, merchant_private_key_sealed FROM channel_apps"
    )
    blobs = [bytes(b) for row in rows for b in row.values() if b is not None]
    assert blobs and all(sealed_by(b, new) for b in blobs)
    rotated = ChannelAppStore(env.pool, [new], ttl_s=0.0, merchant_keys=True)
    app = await rotated.wechatpay(KEYS.appid)
    assert app is not None and app.apiv3_key == KEYS.apiv3_key.encode()
