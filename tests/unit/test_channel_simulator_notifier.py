"""The simulator's notifier keeps the channels' delivery rules: WeChat Pay tries 16 times (15
retries over about 24 h), Alipay 8 (7 retries over about 25 h), each attempt signed anew at its
time; copies share their notice's id; random first delays let later notices overtake earlier
ones. Against a local receiver, with the schedules scaled down."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aiohttp import web
from support.receivers import posts_to, serving

from fundhub.channel_simulator.notifier import (
    ALIPAY_RETRIES_S,
    WECHATPAY_RETRIES_S,
    Behaviour,
    Notifier,
)
from fundhub.channels.events import Channel


def test_the_schedules_are_the_channels() -> None:
    assert len(WECHATPAY_RETRIES_S) == 15 and 23 * 3600 < sum(WECHATPAY_RETRIES_S) < 25 * 3600
    assert WECHATPAY_RETRIES_S[:4] == (15, 15, 30, 180)
    assert len(ALIPAY_RETRIES_S) + 1 == 8 and 24 * 3600 < sum(ALIPAY_RETRIES_S) < 26 * 3600


async def run(
    behaviour: Behaviour,
    answer: Callable[[], web.Response] | None,
    sends: list[tuple[Channel, str]],
) -> tuple[Notifier, list[tuple[str, str, str]]]:
    """Send ``sends`` (channel, id) in order; what arrived: (path, id, stamp of the attempt)."""
    arrived: list[tuple[str, str, str]] = []

    async def take(request: web.Request) -> web.StreamResponse:
        arrived.append((request.path, request.headers["X-Id"], request.headers["X-At"]))
        if answer is not None:
            return answer()
        return web.Response(status=204) if request.path == "/w" else web.Response(text="success")

    app = posts_to("/w", take)
    app.router.add_post("/a", take)
    notifier = Notifier(behaviour)
    async with serving(app) as base, notifier.running():
        for channel, notice_id in sends:

            def post(now: datetime, notice_id: str = notice_id) -> tuple[dict[str, str], bytes]:
                return {"X-Id": notice_id, "X-At": now.isoformat()}, b"{}"

            path = "/w" if channel is Channel.WECHATPAY else "/a"
            notifier.send(channel, notice_id, "TEST", "ORDER", base + path, post)
        assert await notifier.drain(30)
    return notifier, arrived


async def test_a_receiver_that_never_takes_it_gets_every_attempt_then_it_is_given_up() -> None:
    behaviour = Behaviour(time_factor=0.00001)
    notifier, arrived = await run(
        behaviour,
        lambda: web.Response(status=500),
        [(Channel.WECHATPAY, "w1"), (Channel.ALIPAY, "a1")],
    )
    assert sum(1 for path, *_ in arrived if path == "/w") == 16
    assert sum(1 for path, *_ in arrived if path == "/a") == 8
    assert len({at for *_, at in arrived}) == len(arrived)  # each attempt signed at its time
    assert notifier.stats.to_json()["gaveUp"] == 2 and notifier.stats.retries == 15 + 7


async def test_alipay_wants_exactly_success() -> None:
    _, arrived = await run(
        Behaviour(time_factor=0.00001),
        lambda: web.Response(text="success "),
        [(Channel.ALIPAY, "a2")],
    )
    assert len(arrived) == 8


async def test_copies_share_the_notices_id() -> None:
    behaviour = Behaviour(duplicate_rate=1.0, seed=3)
    notifier, arrived = await run(behaviour, None, [(Channel.WECHATPAY, f"w{i}") for i in range(5)])
    ids = [notice_id for _, notice_id, _ in arrived]
    assert sorted(ids) == sorted([f"w{i}" for i in range(5)] * 2)
    assert notifier.stats.duplicates == 5


async def test_first_delays_let_later_notices_overtake() -> None:
    sent = [(Channel.ALIPAY, f"a{i:02d}") for i in range(20)]
    _, arrived = await run(Behaviour(delay_ms=(0, 300), seed=11), None, sent)
    order = [notice_id for _, notice_id, _ in arrived]
    assert sorted(order) == [notice_id for _, notice_id in sent]  # each once
    assert order != [notice_id for _, notice_id in sent]  # not in the order sent
