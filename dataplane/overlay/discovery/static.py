"""The static peer source: a fixed list of IPv4 addresses (``--peer``), published once."""

from __future__ import annotations

from collections.abc import Iterable

from .base import DiscoveryError, Publish, _ipv4, _SourceBase


class StaticSource(_SourceBase):
    """A fixed list of IPv4 addresses (``--peer``), published once."""

    def __init__(self, addresses: Iterable[str], *, name: str = "static") -> None:
        super().__init__(name)
        peers = []
        for address in addresses:
            normal = _ipv4(str(address).strip())
            if normal is None:
                raise DiscoveryError(f"static peer {address!r} is not an IPv4 address")
            peers.append(normal)
        self.addresses = frozenset(peers)

    async def run(self, publish: Publish) -> None:
        self._publish(publish, self.addresses)
