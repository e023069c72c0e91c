"""The tests' services listen on ports no outgoing connection can take meanwhile."""

from __future__ import annotations

from support.processes import ephemeral_range, free_port


def test_free_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    low, high = ephemeral_range()
    ports = [free_port() for _ in range(200)]
    assert not [p for p in ports if low <= p <= high]
    assert len(set(ports)) == len(ports)
