"""RFC 7348 §5 on the send side: the flow -> source-port mapping, the same in both twins.

The sockets themselves (the pool, and the pump sending each flow from its port) are exercised in
``tests/net/test_io_source_ports.py``, inside a network namespace of their own.
"""

from __future__ import annotations

import itertools
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.io.udp import (
    DYNAMIC_PORTS,
    pool_ports,
)
from dataplane.pump import tunnel as pure_pump
from dataplane.wire.vxlan import source_port_for
from tests.conftest import require
from tests.unit.pump.conftest import pump_modules, udp4

NEEDS_CSUM, TCPV4 = 1, 1
LOW, HIGH = DYNAMIC_PORTS


# -- the mapping ---------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 16, 32, 255, 256])
def test_pool_ports_are_spread_over_the_dynamic_range(count: int) -> None:
    ports = pool_ports(count)
    assert len(ports) == count == len(set(ports))
    assert ports == sorted(ports)
    assert ports[0] == LOW and all(LOW <= p <= HIGH for p in ports)
    step = (HIGH - LOW + 1) // count
    assert all(b - a == step for a, b in itertools.pairwise(ports))


@pytest.mark.parametrize("count", [0, -1, 257])
def test_pool_size_is_checked(count: int) -> None:
    with pytest.raises(ValueError, match="send pool"):
        pool_ports(count)


def test_slot_is_the_stripe_of_the_hash_port(impl: ModuleType) -> None:
    assert impl.source_slot(LOW, 16) == 0
    assert impl.source_slot(HIGH, 16) == 15
    assert impl.source_slot(LOW + 1023, 16) == 0
    assert impl.source_slot(LOW + 1024, 16) == 1
    # With a full pool the hash port and the chosen socket's first-choice port share a stripe.
    for port in range(LOW, HIGH + 1, 97):
        slot = impl.source_slot(port, 32)
        first = pool_ports(32)[slot]
        assert first <= port < first + 512
    assert impl.source_slot(12345, 1) == 0 and impl.source_slot(70000, 8) == 7 and impl.source_slot(0, 8) == 0


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 70000), st.integers(0, 300))
def test_twins_choose_the_same_slot(port: int, count: int) -> None:
    modules = pump_modules()
    require(len(modules) == 2, "dataplane.pump._tunnel is not built")
    slot = modules[0].source_slot(port, count)
    assert slot == modules[1].source_slot(port, count)
    assert 0 <= slot < max(count, 1)


def test_flows_spread_over_the_pool() -> None:
    slots = {
        pure_pump.source_slot(source_port_for(bytes(udp4(b"x", sport=1000 + i))), 16) for i in range(200)
    }
    assert len(slots) >= 12  # 200 flows hashed into 16 stripes leave few empty
