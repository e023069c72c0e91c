"""The dev stack and the operator CLI against the real Kafka and Postgres of the test session."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.env import ModuleEnv
from typer.testing import CliRunner

from fundhub.access.keys import SCOPES as API_KEY_SCOPES
from fundhub.access.keys import InvalidKeySpec, new_api_key, parse_accounts, parse_scopes
from fundhub.bank_transfers.bank_apps import InvalidBankApp, parse_sign_excludes
from fundhub.cli.balances import format_minor
from fundhub.cli.devstack import Infra
from fundhub.cli.devstack.endpoints import HostPort, parse_bootstrap, parse_dsn, same_address
from fundhub.cli.devstack.infra import local_kafka
from fundhub.cli.devstack.kafka import KafkaNode, new_cluster_id, probe_kafka
from fundhub.cli.devstack.kafka_cluster import (
    KafkaCluster,
    cluster_addresses,
    cluster_nodes,
    is_cluster_layout,
)
from fundhub.cli.devstack.postgres import probe_postgres
from fundhub.cli.devstack.stack import service_specs
from fundhub.cli.main import app as cli_app
from fundhub.common.config import Settings
from fundhub.common.sealing import unseal
from fundhub.common.topics import min_insync_replicas

BIN = Path(sys.executable).parent


# -- pure parts -----------------------------------------------------------------------------


def test_scopes_come_from_the_one_allowed_set() -> None:
    assert parse_scopes(" admin , balance:read,admin") == ["admin", "balance:read"]
    assert set(parse_scopes(",".join(API_KEY_SCOPES))) == API_KEY_SCOPES
    with pytest.raises(InvalidKeySpec, match="unknown scope 'payouts:fly'"):
        parse_scopes("balance:read,payouts:fly")
    with pytest.raises(InvalidKeySpec):
        parse_scopes(" , ")


def test_a_bad_key_spec_is_a_usage_error_of_the_cli() -> None:
    args = ["api-key", "create", "--name", "x", "--scopes", "payouts:fly", "--accounts", "*"]
    done = CliRunner().invoke(cli_app, args)
    assert done.exit_code == 2
    assert "unknown scope 'payouts:fly'" in done.output


def test_accounts_are_ids_or_star_alone() -> None:
    assert parse_accounts("A1, A2,A1") == ["A1", "A2"]
    assert parse_accounts("*") == ["*"]
    for bad in ("", " , ", "*,A1", "has space"):
        with pytest.raises(InvalidKeySpec):
            parse_accounts(bad)


def test_new_keys_have_the_documented_shape() -> None:
    key = new_api_key("ops", "balance:read", "*")
    assert re.fullmatch(r"ak_[0-9a-f]{20}", key.key_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", key.secret)
    assert key.secret not in repr(key)


def test_sign_excludes_always_hold_sign() -> None:
    assert parse_sign_excludes(None) == ["sign"]
    assert parse_sign_excludes("sign_type") == ["sign", "sign_type"]
    with pytest.raises(InvalidBankApp):
        parse_sign_excludes("Sign Type")


def test_minor_units_print_without_floats() -> None:
    assert format_minor(123456, "CNY") == "1,234.56"
    assert format_minor(-5, "CNY") == "-0.05"
    assert format_minor(0, "USD") == "0.00"


def test_addresses() -> None:
    assert parse_bootstrap("127.0.0.1:9092") == [HostPort("127.0.0.1", 9092)]
    assert parse_bootstrap("a:1, b") == [HostPort("a", 1), HostPort("b", 9092)]
    target = parse_dsn("postgresql://fundhub@localhost:55432/fundhub_x")
    assert (target.user, target.database, target.address) == (
        "fundhub",
        "fundhub_x",
        HostPort("localhost", 55432),
    )
    assert same_address(HostPort("localhost", 9092), HostPort("127.0.0.1", 9092))
    assert not same_address(HostPort("kafka", 9092), HostPort("127.0.0.1", 9092))
    assert not new_cluster_id().startswith("-")


def test_a_local_cluster_is_named_by_its_layout(tmp_path: Path) -> None:
    """`fundhub infra up --brokers 3` lays brokers out at P, P+2, P+4; a bootstrap list of
    that shape is the checkout's cluster (started when down), any other is external."""
    three = cluster_addresses(3, 19092)
    assert [str(a) for a in three] == ["127.0.0.1:19092", "127.0.0.1:19094", "127.0.0.1:19096"]
    assert is_cluster_layout(three)
    assert not is_cluster_layout(three[:1])
    assert not is_cluster_layout(parse_bootstrap("127.0.0.1:19092,127.0.0.1:19093"))
    assert not is_cluster_layout(parse_bootstrap("kafka-1:9092,kafka-1:9094"))
    assert isinstance(local_kafka(parse_bootstrap("127.0.0.1:9092")), KafkaNode)
    assert isinstance(local_kafka(three), KafkaCluster)
    assert local_kafka(parse_bootstrap("b1:9092,b2:9092,b3:9092")) is None


def test_cluster_nodes_share_voters_and_replicate_internal_topics(tmp_path: Path) -> None:
    from fundhub.cli.devstack.paths import deploy_dir

    cluster = cluster_nodes(
        tmp_path, cluster_addresses(3, 19092), deploy=deploy_dir() / "kafka", jars=tmp_path
    )
    assert cluster.bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    configs = []
    for node in cluster.nodes:
        node.home.mkdir(parents=True)
        configs.append(dict(
            line.split("=", 1) for line in node.render_config().read_text().splitlines()
            if line and not line.startswith("#")
        ))  # fmt: skip
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    assert {c["controller.quorum.voters"] for c in configs} == {voters}
    assert [c["node.id"] for c in configs] == ["1", "2", "3"]
    for config in configs:
        assert config["offsets.topic.replication.factor"] == "3"
        assert config["default.replication.factor"] == "3"
        assert config["min.insync.replicas"] == "2"
        assert config["transaction.state.log.min.isr"] == "2"
        assert config["unclean.leader.election.enable"] == "false"
    single = KafkaNode(home=tmp_path / "single", deploy=deploy_dir() / "kafka")
    single.home.mkdir()
    rendered = single.render_config().read_text()
    assert "controller.quorum.voters=1@127.0.0.1:9093\n" in rendered
    assert "min.insync.replicas=1\n" in rendered
    assert [min_insync_replicas(n) for n in (1, 2, 3, 5)] == [1, 1, 2, 2]


# -- real infrastructure --------------------------------------------------------------------


async def test_infra_is_ready(infra_handle: Infra, infra: Settings) -> None:
    assert await probe_kafka(infra.kafka_bootstrap)
    assert await probe_postgres(infra.database_url)
    if infra_handle.kafka is not None:
        assert infra_handle.kafka.pid() is not None


def fundhub(env: ModuleEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "fundhub"), *args],
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_api_key_is_stored_sealed_and_shown_once(env: ModuleEnv) -> None:
    done = fundhub(
        env, "api-key", "create", "--name", "ops", "--scopes", "balance:read",
        "--accounts", "A1,A2", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    row = await env.pool.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", out["keyId"])
    assert row["scopes"] == ["balance:read"] and row["accounts"] == ["A1", "A2"]
    assert out["secret"].encode() not in bytes(row["secret_sealed"])
    assert env.settings.master_key is not None
    assert unseal(bytes(row["secret_sealed"]), env.settings.master_key) == out["secret"].encode()


def test_api_key_refusals_exit_2(env: ModuleEnv) -> None:
    base = ["api-key", "create", "--name", "ops"]
    unknown = fundhub(env, *base, "--scopes", "payouts:fly", "--accounts", "*")
    assert unknown.returncode == 2 and "unknown scope" in unknown.stderr
    empty = fundhub(env, *base, "--scopes", "admin", "--accounts", " ")
    assert empty.returncode == 2 and "account" in empty.stderr
    env_without_key = env.environ(FUNDHUB_MASTER_KEY="")
    missing = subprocess.run(
        [str(BIN / "fundhub"), *base, "--scopes", "admin", "--accounts", "*"],
        env=env_without_key,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2 and "FUNDHUB_MASTER_KEY" in missing.stderr


async def test_bank_app_add_validates_and_upserts(env: ModuleEnv) -> None:
    pem = env.tmp / "bank.pem"
    pem.write_text(env.bank.public_pem)
    done = fundhub(env, "bank-app", "add", "--app-id", "APP1", "--public-key", str(pem))
    assert done.returncode == 0, done.stderr
    again = fundhub(
        env, "bank-app", "add", "--app-id", "APP1", "--public-key", str(pem),
        "--sign-excludes", "sign,sign_type",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    row = await env.pool.fetchrow("SELECT * FROM bank_apps WHERE app_id = 'APP1'")
    assert row["sign_excludes"] == ["sign", "sign_type"]
    junk = env.tmp / "junk.pem"
    junk.write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    refused = fundhub(env, "bank-app", "add", "--app-id", "APP2", "--public-key", str(junk))
    assert refused.returncode == 2 and "RSA public key" in refused.stderr


def test_balance_of_an_unknown_account_says_so(env: ModuleEnv) -> None:
    done = fundhub(env, "balance", "NO-SUCH-ACCOUNT")
    assert done.returncode == 1 and "unknown account" in done.stderr


def test_only_the_services_that_unseal_secrets_get_the_master_key() -> None:
    """Defect 8 of issue 9: the master key was in every service's environment."""
    env = {
        "FUNDHUB_ENV": "dev",
        "FUNDHUB_MASTER_KEY": "master-key-under-test",
        "FUNDHUB_BANK_SIM_PRIVATE_KEY_FILE": "/tmp/bank.pem",
        "FUNDHUB_CHANNEL_SIM_KEYS_DIR": "/tmp/channel-sim",
    }
    specs = {s.name: dict(s.env or {}) for s in service_specs(Settings(env="dev"), env)}
    holders = {n for n, e in specs.items() if e.get("FUNDHUB_MASTER_KEY")}
    # payment-worker sends orders' refunds through the channels' APIs, signed with the
    # merchant keys stored sealed.
    assert holders == {"gateway", "callback-dispatcher", "payment-worker", "reconciler"}
    # Set empty, so one in the operator's shell is not passed down either.
    assert all("FUNDHUB_MASTER_KEY" in e for e in specs.values())
    assert {n for n, e in specs.items() if e.get("FUNDHUB_BANK_SIM_PRIVATE_KEY_FILE")} == {
        "bank-simulator"
    }
    assert {n for n, e in specs.items() if e.get("FUNDHUB_CHANNEL_SIM_KEYS_DIR")} == {
        "channel-simulator"
    }
