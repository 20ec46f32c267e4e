"""DHCPv4 server (dnsmasq's job in kuberouter, done better): the sans-I/O core and the lease store.

``from dataplane.dhcp import DhcpServer, Pool`` gives the compiled twins (``_server``, ``_pool``)
unless ``WEBSPACES_NO_EXTENSIONS=1`` or they were not built; ``dataplane.dhcp.server`` and
``dataplane.dhcp.pool`` always name the pure-Python twins. Leases, events and replies live in
:mod:`.events`, shared by both twins; durable stores in :mod:`.store`.

Durability contract: ``DhcpServer.receive`` records lease decisions into the store; the I/O loop
handles a batch of packets, calls ``store.commit()`` once (one fsync), then sends the replies.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from dataplane.wire import _select

from .events import INFINITE as INFINITE
from .events import LEASE_TRANSITIONS as LEASE_TRANSITIONS
from .events import AddressDeclined as AddressDeclined
from .events import ClientKey as ClientKey
from .events import Event as Event
from .events import Lease as Lease
from .events import LeaseExpired as LeaseExpired
from .events import LeaseFreed as LeaseFreed
from .events import LeaseGranted as LeaseGranted
from .events import LeaseOffered as LeaseOffered
from .events import LeaseReleased as LeaseReleased
from .events import LeaseRenewed as LeaseRenewed
from .events import LeaseState as LeaseState
from .events import OfferWithdrawn as OfferWithdrawn
from .events import PoolExhausted as PoolExhausted
from .events import PoolReplenished as PoolReplenished
from .events import QuarantineEnded as QuarantineEnded
from .events import Reply as Reply
from .store import JournalStore as JournalStore
from .store import LeaseStore as LeaseStore
from .store import MemoryStore as MemoryStore
from .store import SqliteStore as SqliteStore
from .store import open_store as open_store

PACKAGE = "dataplane.dhcp"

if TYPE_CHECKING:  # mypy sees the pure-Python twins, whose API the compiled ones share
    from .pool import Pool as Pool
    from .pool import int_to_ip as int_to_ip
    from .pool import ip_to_int as ip_to_int
    from .server import DhcpServer as DhcpServer
    from .server import Reservation as Reservation
    from .server import ServerConfig as ServerConfig
else:
    _pool: ModuleType = _select.load("pool", PACKAGE)
    _server: ModuleType = _select.load("server", PACKAGE)
    Pool = _pool.Pool
    int_to_ip = _pool.int_to_ip
    ip_to_int = _pool.ip_to_int
    DhcpServer = _server.DhcpServer
    Reservation = _server.Reservation
    ServerConfig = _server.ServerConfig


def implementation() -> str:
    """``"cython"`` when :class:`DhcpServer` is the compiled twin, else ``"python"``."""
    return _select.implementation(_select.load("server", PACKAGE))
