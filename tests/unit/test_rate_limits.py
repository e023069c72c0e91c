"""Rate limits: how they are written and the GCRA arithmetic the store applies."""

from __future__ import annotations

import pytest

from fundhub.access.limits import (
    InvalidRate,
    Rate,
    gcra,
    lease_size,
    parse_key_limits,
    parse_rate,
    retry_after_header,
    route_class,
    share_out,
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
        tat, allowed, wait = gcra(tat, 100.0, rate)
        assert (allowed, wait) == (1, 0.0)
    assert tat is not None
    denied_tat, allowed, wait = gcra(tat, 100.0, rate)
    assert denied_tat == tat and allowed == 0  # a denial is not counted
    assert wait == pytest.approx(0.2)
    _, allowed, _ = gcra(tat, 100.2, rate)
    assert allowed == 1
    # An idle bucket has its whole burst back, not more.
    tat, allowed, wait = gcra(tat, 200.0, rate)
    assert allowed == 1 and tat == pytest.approx(200.2)


def test_gcra_counts_a_batch_as_its_requests_one_by_one() -> None:
    rate = Rate(5, 1.0)
    tat, allowed, wait = gcra(None, 100.0, rate, count=8)
    assert (allowed, tat) == (5, pytest.approx(101.0)) and wait == pytest.approx(0.2)
    one_by_one: float | None = None
    passed = 0
    for _ in range(8):
        one_by_one, ok, _ = gcra(one_by_one, 100.0, rate)
        passed += ok
    assert passed == 5 and one_by_one == pytest.approx(tat)


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.0) == "1"
    assert retry_after_header(1.2) == "2"


def test_a_lease_is_a_small_share_of_a_large_limit_and_exact_for_a_small_one() -> None:
    assert lease_size(Rate(10, 60.0)) == 1
    assert lease_size(Rate(200, 1.0)) == 2
    assert lease_size(Rate(1000, 1.0)) == 10
    assert lease_size(Rate(10**6, 1.0)) == 50
    assert share_out([10, 10, 10], 15) == [10, 5, 0]
    assert share_out([1, 1], 0) == [0, 0]
