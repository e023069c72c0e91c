"""The house rules of the layout, read from the source: what may import what."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB_AND_HTTP = ("fastapi", "starlette", "uvicorn", "aiohttp", "httpx")
SERVICES = (
    "fundhub.gateway",
    "fundhub.notify_ingest",
    "fundhub.payment_worker",
    "fundhub.callback_dispatcher",
    "fundhub.audit_writer",
    "fundhub.bank_simulator",
    "fundhub.channel_simulator",
    "fundhub.cli",
)
CONTEXTS = (
    "access",
    "ledger",
    "bank_transfers",
    "payouts",
    "webhooks",
    "audit",
    "merchants",
    "channels",
    "orders",
    "settlement",
    "reconciliation",
)
# The pure domain of each context: rules, state machines and wire shapes, no I/O.
DOMAIN = [
    "contexts/reconciliation/src/fundhub/reconciliation/statement.py",
    "contexts/reconciliation/src/fundhub/reconciliation/classes.py",
    "contexts/reconciliation/src/fundhub/reconciliation/outcomes.py",
    "contexts/reconciliation/src/fundhub/reconciliation/fees.py",
    "contexts/reconciliation/src/fundhub/reconciliation/business_day.py",
    "contexts/reconciliation/src/fundhub/reconciliation/discrepancy_states.py",
    "contexts/reconciliation/src/fundhub/reconciliation/report.py",
    "contexts/reconciliation/src/fundhub/reconciliation/match_keys.py",
    "contexts/reconciliation/src/fundhub/reconciliation/wire.py",
    "contexts/reconciliation/src/fundhub/reconciliation/fetch_schedule.py",
    "contexts/reconciliation/src/fundhub/reconciliation/bill_bytes.py",
    "contexts/reconciliation/src/fundhub/reconciliation/bill_fields.py",
    "contexts/reconciliation/src/fundhub/reconciliation/gc_pause.py",
    "contexts/reconciliation/src/fundhub/reconciliation/wechatpay_bill.py",
    "contexts/reconciliation/src/fundhub/reconciliation/alipay_bill.py",
    "contexts/reconciliation/src/fundhub/reconciliation/bank_file.py",
    "contexts/reconciliation/src/fundhub/reconciliation/initialisation/files.py",
    "contexts/reconciliation/src/fundhub/reconciliation/initialisation/plan.py",
    "contexts/access/src/fundhub/access/keys.py",
    "contexts/access/src/fundhub/access/binding.py",
    "contexts/access/src/fundhub/access/limits.py",
    "contexts/ledger/src/fundhub/ledger/rules.py",
    "contexts/bank-transfers/src/fundhub/bank_transfers/notification.py",
    "contexts/bank-transfers/src/fundhub/bank_transfers/records.py",
    "contexts/bank-transfers/src/fundhub/bank_transfers/ports.py",
    "contexts/payouts/src/fundhub/payouts/states.py",
    "contexts/payouts/src/fundhub/payouts/request.py",
    "contexts/payouts/src/fundhub/payouts/bank.py",
    "contexts/payouts/src/fundhub/payouts/bank_results.py",
    "contexts/payouts/src/fundhub/payouts/wire.py",
    "contexts/payouts/src/fundhub/payouts/sandbox.py",
    "contexts/webhooks/src/fundhub/webhooks/policy.py",
    "contexts/webhooks/src/fundhub/webhooks/destinations.py",
    "contexts/audit/src/fundhub/audit/masking.py",
    "contexts/audit/src/fundhub/audit/entry.py",
    "contexts/audit/src/fundhub/audit/chain.py",
    "contexts/merchants/src/fundhub/merchants/ids.py",
    "contexts/merchants/src/fundhub/merchants/identity.py",
    "contexts/merchants/src/fundhub/merchants/materials.py",
    "contexts/merchants/src/fundhub/merchants/states.py",
    "contexts/merchants/src/fundhub/merchants/depository.py",
    "contexts/merchants/src/fundhub/merchants/wire.py",
    "contexts/merchants/src/fundhub/merchants/ports.py",
    "contexts/channels/src/fundhub/channels/events.py",
    "contexts/channels/src/fundhub/channels/ports.py",
    "contexts/channels/src/fundhub/channels/notification.py",
    "contexts/channels/src/fundhub/channels/wechatpay.py",
    "contexts/channels/src/fundhub/channels/alipay.py",
    "contexts/orders/src/fundhub/orders/request.py",
    "contexts/orders/src/fundhub/orders/splits.py",
    "contexts/orders/src/fundhub/orders/states.py",
    "contexts/orders/src/fundhub/orders/postings.py",
    "contexts/orders/src/fundhub/orders/wire.py",
    "contexts/orders/src/fundhub/orders/depository.py",
    "contexts/orders/src/fundhub/orders/refund_debits.py",
    "contexts/settlement/src/fundhub/settlement/cutoff.py",
    "contexts/settlement/src/fundhub/settlement/amounts.py",
    "contexts/settlement/src/fundhub/settlement/states.py",
    "contexts/settlement/src/fundhub/settlement/depository.py",
]
IO = ("asyncpg", "aiokafka", "aiohttp", "httpx", "fastapi", "starlette", "uvicorn", "socket")


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def under(module: str, roots: tuple[str, ...]) -> bool:
    return any(module == root or module.startswith(root + ".") for root in roots)


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", sources("libs/common/src"), ids=lambda p: p.name)
def test_common_holds_plumbing_only(path: Path) -> None:
    found = imports(path)
    assert not [m for m in found if under(m, WEB_AND_HTTP)], "no web framework, no HTTP client"
    assert not [m for m in found if under(m, tuple(f"fundhub.{c}" for c in CONTEXTS))]
    assert not [m for m in found if under(m, SERVICES)]


@pytest.mark.parametrize("path", sources("libs/bank-client/src"), ids=lambda p: p.name)
def test_the_bank_client_knows_http_not_any_protocol(path: Path) -> None:
    """Each context keeps its own requests, answers and refusals; the client only carries them."""
    found = imports(path)
    assert not [m for m in found if under(m, tuple(f"fundhub.{c}" for c in CONTEXTS))]
    assert not [m for m in found if under(m, SERVICES)]


@pytest.mark.parametrize("path", sources("contexts"), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_contexts_never_reach_into_services(path: Path) -> None:
    assert not [m for m in imports(path) if under(m, SERVICES)]


@pytest.mark.parametrize("relative", DOMAIN)
def test_domain_modules_do_no_io(relative: str) -> None:
    assert not [m for m in imports(ROOT / relative) if under(m, IO)]
