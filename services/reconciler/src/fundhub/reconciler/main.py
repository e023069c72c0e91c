"""``fundhub-reconciler``: fetches the previous day's statements at the set time (GMT+8),
imports and reconciles them; ``--date D`` fetches one day now and exits."""

from __future__ import annotations

import argparse
import asyncio
from datetime import date
from functools import partial

import aiohttp

from fundhub.channels.apps import ChannelAppStore
from fundhub.common import db
from fundhub.common.config import Settings, get_settings
from fundhub.common.migrations import verify
from fundhub.common.sampling import Sampler, messaging_probes
from fundhub.reconciler.daily import fetch_day, run_daily, sources_of
from fundhub.reconciler.fetchers import download_fetcher
from fundhub.reconciliation.open_discrepancies import open_discrepancies_probe
from fundhub.web.worker import run_worker, start_worker


async def run(settings: Settings) -> None:
    await verify(settings.database_url)
    pool = await db.connect_pool(settings.database_url, max_size=2)
    session = aiohttp.ClientSession()
    apps = ChannelAppStore(pool, settings.master_keys(), merchant_keys=True)
    fetch = download_fetcher(settings, session, apps)
    probes = [*messaging_probes(), open_discrepancies_probe()]
    await run_worker(
        "reconciler",
        {
            "daily": run_daily(pool, fetch, settings),
            "sampler": Sampler(pool, probes, settings.metrics_sample_s).run(),
        },
        {"postgres": partial(db.ping, pool)},
        settings.gateway_host,
        settings.reconciler_port,
        close=[session.close, partial(db.close_pool, pool)],
    )


async def once(settings: Settings, day: date) -> dict[str, str]:
    await verify(settings.database_url)
    pool = await db.connect_pool(settings.database_url, max_size=2)
    try:
        async with aiohttp.ClientSession() as session:
            apps = ChannelAppStore(pool, settings.master_keys(), merchant_keys=True)
            fetch = download_fetcher(settings, session, apps)
            done = await fetch_day(pool, fetch, settings, day, sources_of(settings))
            return {s.value: o for s, o in done.items()}
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="fundhub-reconciler", description=__doc__)
    parser.add_argument("--date", help="fetch this day (YYYY-MM-DD) now, then exit")
    args = parser.parse_args()
    if args.date:
        print(asyncio.run(once(get_settings(), date.fromisoformat(args.date))))
        return
    start_worker("reconciler", run)


if __name__ == "__main__":
    main()
