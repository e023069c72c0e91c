"""The demo stream: a steady trickle of notices so a newcomer watches balances move."""

from __future__ import annotations

import asyncio
import random
import secrets

import structlog

from fundhub.bank_simulator.notifications import PrivateKey, build_many
from fundhub.bank_simulator.scenarios import DemoFeed, demo_accounts
from fundhub.bank_simulator.sender import BankSender
from fundhub.common.clock import utcnow

log = structlog.get_logger("fundhub.bank_simulator.stream")

# A gateway that is down makes each tick's sends wait out their retries; past this many
# ticks in flight, new ticks are skipped rather than piling up.
_MAX_TICKS_IN_FLIGHT = 32


def new_feed(accounts: int, seed: int | None = None) -> DemoFeed:
    """A feed over the first ``accounts`` demo accounts, with record ids new to the gateway."""
    return DemoFeed(
        rng=random.Random(seed),
        accounts=demo_accounts(accounts),
        record_prefix="D" + secrets.token_hex(5),
    )


async def run_stream(
    feed: DemoFeed, sender: BankSender, app_id: str, key: PrivateKey, interval_s: float
) -> None:
    """Every ``interval_s`` seconds, sign and send what the feed says is due; until cancelled."""
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    in_flight: set[asyncio.Task[None]] = set()

    async def deliver(batch: list[dict[str, str]]) -> None:
        # A handful per tick, sent in the order the feed chose (follow-ups before news).
        for params in batch:
            await sender.send(params)

    try:
        while True:
            await asyncio.sleep(interval_s)
            if len(in_flight) >= _MAX_TICKS_IN_FLIGHT:
                log.warning("demo_stream_tick_skipped", in_flight=len(in_flight))
                continue
            specs = feed.tick(utcnow())
            batch = build_many(specs, app_id, key)
            log.info(
                "demo_stream_tick",
                notices=[
                    {
                        "record_id": s.record_id,
                        "account": s.in_acct_no,
                        "amount": s.trans_amount,
                        "deduct_status": s.deduct_status,
                        "reverse_flag": s.reverse_flag,
                    }
                    for s in specs
                ],
            )
            task = asyncio.create_task(deliver(batch))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
    finally:
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
