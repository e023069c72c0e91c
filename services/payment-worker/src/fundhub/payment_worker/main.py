"""``fundhub-payment-worker``: accept payouts, send them to the bank, follow each to its end;
and drive merchants' requests to the depository (reviews, micro-deposits, closes) the same way;
take each order refund's money, send it to the channel, follow it to its end (and, after the
order's split, have the depository debit the members)."""

from __future__ import annotations

import contextlib
from functools import partial

from fundhub.access.environment_stamp import claim_environment
from fundhub.access.keys import SANDBOX, environment_served_by
from fundhub.bank_client.session import bank_session
from fundhub.channels.apps import ChannelAppStore
from fundhub.channels.payments import open_channel_payments
from fundhub.common import db
from fundhub.common.config import Settings
from fundhub.common.consumer import BatchConsumer
from fundhub.common.kafka import KafkaPublisher, ensure_topics
from fundhub.common.migrations import verify
from fundhub.common.outbox import PAYOUTS_CHANNEL, OutboxRelay
from fundhub.common.retention import policy_of, run_retention
from fundhub.common.sampling import Probe, Sampler, messaging_probes
from fundhub.common.topics import topics
from fundhub.merchants import consumers as merchant_consumers
from fundhub.merchants import poller as merchant_poller
from fundhub.merchants.depository_http import HttpDepository
from fundhub.merchants.submitter import Submitter as MerchantSubmitter
from fundhub.orders import refunds
from fundhub.orders.channel_choice import from_channels
from fundhub.orders.consumer import refund_command_handler
from fundhub.orders.refund_debit_driver import RefundDebitDriver
from fundhub.orders.refund_debits_http import HttpRefundDebits
from fundhub.orders.store import sample_refunds_past_deadline
from fundhub.payouts import commands, results
from fundhub.payouts.bank import BankPayoutAdapter
from fundhub.payouts.bank_http import HttpBankAdapter
from fundhub.payouts.consumers import command_handler, result_handler
from fundhub.payouts.poller import Poller
from fundhub.payouts.sandbox_bank import SandboxBank
from fundhub.payouts.store import sample_past_deadline
from fundhub.payouts.submitter import Submitter
from fundhub.settlement.worker import settlement_worker
from fundhub.web.worker import run_worker, start_worker

# Per batch the worker locks, writes and (for commands) calls the bank once, whatever its size:
# waiting a little for larger batches costs a few ms of latency and saves most of that work.
CONSUMER_LINGER_MS = 25


async def run(settings: Settings) -> None:
    """The payouts' work and the orders' refunds (which call the channels' refund APIs with
    the merchants' keys: this process needs ``FUNDHUB_MASTER_KEY``)."""
    await verify(settings.database_url)
    names = topics(settings)
    pool = await db.connect_pool(settings.database_url, max_size=max(8, settings.db_pool_max))
    served = environment_served_by(settings.env)
    # Before any payout goes to a bank: a live worker never sends a sandbox database's payouts.
    await claim_environment(pool, served, "payment-worker")
    await ensure_topics(settings)
    publisher = KafkaPublisher(settings)
    await publisher.start()
    session = bank_session(settings)
    bank: BankPayoutAdapter = HttpBankAdapter(
        session, settings.bank_base_url, timeout_s=settings.bank_timeout_s
    )
    if served == SANDBOX:  # the bank is the simulator: it is told the payouts' scenarios
        bank = SandboxBank(bank, pool, session, settings.bank_base_url, settings.bank_timeout_s)
    submitter = Submitter(pool, names, bank, settings.bank_callback_url())
    command_consumer = BatchConsumer(
        settings,
        pool,
        publisher,
        names.group(commands.CONSUMER),
        names.payout_commands,
        command_handler(settings, names, submitter),
        linger_ms=CONSUMER_LINGER_MS,
    )
    result_consumer = BatchConsumer(
        settings,
        pool,
        publisher,
        names.group(results.CONSUMER),
        names.bank_payout_results,
        result_handler(settings, names),
        linger_ms=CONSUMER_LINGER_MS,
    )
    poller = Poller(settings, pool, submitter)
    # The depository is the same bank: the same session (its TLS), the same notify URL.
    depository = HttpDepository(session, settings.bank_base_url, timeout_s=settings.bank_timeout_s)
    merchants = MerchantSubmitter(pool, names, depository, settings.bank_callback_url())
    merchant_commands = BatchConsumer(
        settings,
        pool,
        publisher,
        names.group(merchant_consumers.COMMANDS_CONSUMER),
        names.merchant_commands,
        merchant_consumers.command_handler(settings, merchants),
    )
    merchant_results = BatchConsumer(
        settings,
        pool,
        publisher,
        names.group(merchant_consumers.RESULTS_CONSUMER),
        names.bank_merchant_results,
        merchant_consumers.result_handler(settings, names),
    )
    closing = contextlib.AsyncExitStack()
    channel_payments = await closing.enter_async_context(open_channel_payments(settings, pool))
    channels = from_channels(
        settings, channel_payments, ChannelAppStore(pool, settings.master_keys())
    )
    refund_sender = refunds.RefundSender(pool, names, channels)
    refund_consumer = BatchConsumer(
        settings,
        pool,
        publisher,
        names.group(refunds.CONSUMER),
        names.order_commands,
        refund_command_handler(names, refund_sender),
        linger_ms=CONSUMER_LINGER_MS,
    )
    refund_poller = refunds.RefundPoller(
        pool, refund_sender, settings.refund_poll_base_s, settings.refund_poll_max_s
    )
    # A refund after the split: the depository debits the members (the same bank and session).
    refund_debits = RefundDebitDriver(
        pool,
        HttpRefundDebits(session, settings.bank_base_url, timeout_s=settings.bank_timeout_s),
        settings.refund_poll_base_s,
        settings.refund_poll_max_s,
    )
    relay = OutboxRelay(pool, publisher, PAYOUTS_CHANNEL)
    probes = [
        *messaging_probes(),
        Probe("payouts-past-deadline", sample_past_deadline),
        Probe("refunds-past-deadline", sample_refunds_past_deadline),
    ]
    settlement = settlement_worker(settings, pool, publisher, session, names)
    consumers = (
        command_consumer,
        result_consumer,
        merchant_commands,
        merchant_results,
        settlement.results,
        refund_consumer,
    )

    async def kafka_ready() -> bool:
        return all([await consumer.kafka_ready() for consumer in consumers])

    await run_worker(
        "payment_worker",
        {
            "commands": command_consumer.run(),
            "results": result_consumer.run(),
            "poller": poller.run(),
            "merchant-commands": merchant_commands.run(),
            "merchant-results": merchant_results.run(),
            "merchant-poller": merchant_poller.Poller(settings, pool, merchants).run(),
            "order-refunds": refund_consumer.run(),
            "refund-poller": refund_poller.run(),
            "refund-debits": refund_debits.run(),
            "outbox-relay": relay.run(),
            "retention": run_retention(pool, policy_of(settings)),
            "sampler": Sampler(pool, probes, settings.metrics_sample_s).run(),
            **settlement.tasks(),
        },
        {"kafka": kafka_ready, "postgres": partial(db.ping, pool)},
        settings.gateway_host,
        settings.payment_worker_port,
        gentle={
            "commands": command_consumer.stop,
            "results": result_consumer.stop,
            "merchant-commands": merchant_commands.stop,
            "merchant-results": merchant_results.stop,
            "order-refunds": refund_consumer.stop,
            "split-results": settlement.results.stop,
        },
        close=[
            submitter.close,
            merchants.close,
            refund_sender.close,
            closing.aclose,
            session.close,
            publisher.stop,
            partial(db.close_pool, pool),
        ],
    )


def main() -> None:
    start_worker("payment-worker", run)


if __name__ == "__main__":
    main()
