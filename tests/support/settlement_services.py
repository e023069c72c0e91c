"""The bank side as the payouts, settlement and bank reconciliation tests run it, as real
processes: the bank simulator (payouts with seeded outcomes and quick callbacks) and
payment-worker polling it quickly; for settlement, those with the gateway and the callback
dispatcher, the worker's scheduler settling within a second."""

from __future__ import annotations

from dataclasses import dataclass

from fundhub.bank_simulator.sender import callback_url
from support.env import ModuleEnv
from support.processes import Service, WithArguments, callback_dispatcher, free_port, gateway
from support.receivers import ALLOW_LOCAL_RECEIVERS


def payment_worker(env: ModuleEnv, bank_url: str, gateway_url: str) -> Service:
    port = free_port()
    return Service(
        env,
        "payment-worker",
        "fundhub-payment-worker",
        port,
        FUNDHUB_PAYMENT_WORKER_PORT=str(port),
        FUNDHUB_BANK_BASE_URL=bank_url,
        FUNDHUB_BANK_TIMEOUT_S="1",
        FUNDHUB_PAYOUT_NOTIFY_URL=callback_url(gateway_url),
        FUNDHUB_PAYOUT_POLL_INTERVAL_S="0.2",
        FUNDHUB_PAYOUT_POLL_BASE_S="1",
        FUNDHUB_PAYOUT_POLL_MAX_S="3",
    )


def bank_simulator(env: ModuleEnv, gateway_url: str) -> Service:
    port = free_port()
    key_file = env.tmp / f"bank-private-{port}.pem"
    key_file.write_text(env.bank.private_pem)
    return WithArguments(env, "bank-simulator", "fundhub-bank-simulator", port, [
        "--port", str(port), "--gateway-url", gateway_url, "--app-id", env.app_id,
        "--private-key-file", str(key_file), "--retries", "5", "--retry-interval", "0.5",
        "--payout-timeout-delay", "1500", "--payout-callback-delay", "20,300",
        "--payout-return-delay", "300,1500", "--payout-seed", "20240601",
    ])  # fmt: skip


@dataclass(frozen=True)
class SettlementServices:
    gateway: Service
    bank: Service
    worker: Service
    dispatcher: Service


def settlement_services(env: ModuleEnv) -> SettlementServices:
    """The bank app registered and the processes made (not started): receivers on this host
    allowed, the worker's scheduler every 0.2 s and its polls of a split 1-2 s apart, the
    dispatcher's retries quick; a test waits seconds, not minutes, for a settlement."""
    env.register_bank_app()
    gw = gateway(env, **ALLOW_LOCAL_RECEIVERS)
    bank = bank_simulator(env, gw.url)
    worker = payment_worker(env, bank.url, gw.url)
    worker.extra_env.update(
        FUNDHUB_SETTLEMENT_INTERVAL_S="0.2",
        FUNDHUB_SETTLEMENT_POLL_BASE_S="1",
        FUNDHUB_SETTLEMENT_POLL_MAX_S="2",
    )
    dispatcher = callback_dispatcher(
        env, backoff_base_s=0.2, backoff_max_s=1.0, **ALLOW_LOCAL_RECEIVERS
    )
    return SettlementServices(gw, bank, worker, dispatcher)
