"""Rate limits: how they are written and the GCRA arithmetic the store applies."""

from __future__ import annotations

import pytest

from fundhub.access.limits import (
    InvalidRate,
    Rate,
    gcra,
    parse_key_limits,
    parse_rate,
    retry_after_header,
    route_class,
)


def test_rates_are_written_n_per_unit() -> None:
    assert parse_rate("100/second") == Rate(100, 1.0)
    assert parse_rate(" 6000 / minutes ") == Rate(6000, 60.0)
    assert str(parse_rate("10/hour")) == "10/hour"
    for bad in ("", "0/second", "-1/second", "10/day", "ten/second", "10", "1.5/second"):
        with pytest.raises(InvalidRate):
            parse_rate(bad)


def test_a_keys_limits_are_per_route_class() -> None:
    assert parse_key_limits("5/second") == {"read": Rate(5, 1.0), "write": Rate(5, 1.0)}
    assert parse_key_limits("write=2/second") == {"write": Rate(2, 1.0)}
    assert parse_key_limits("read=9/minute, write=1/second") == {
        "read": Rate(9, 60.0),
        "write": Rate(1, 1.0),
    }
    for bad in ("admin=1/second", "read=1/second,read=2/second", "write=oops"):
        with pytest.raises(InvalidRate):
            parse_key_limits(bad)
    assert route_class("GET") == "read" and route_class("POST") == "write"


def test_gcra_lets_a_burst_through_then_one_per_interval() -> None:
    rate = Rate(5, 1.0)  # 5 at once, then one every 0.2 s
    tat: float | None = None
    for _ in range(5):
        tat, wait = gcra(tat, 100.0, rate)
        assert wait == 0.0
    denied_tat, wait = gcra(tat, 100.0, rate)
    assert denied_tat == tat and wait == pytest.approx(0.2)  # a denial is not counted
    _, wait = gcra(tat, 100.2, rate)
    assert wait == 0.0
    # An idle bucket has its whole burst back, not more.
    tat, wait = gcra(tat, 200.0, rate)
    assert wait == 0.0 and tat == pytest.approx(200.2)


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.0) == "1"
    assert retry_after_header(1.2) == "2"
