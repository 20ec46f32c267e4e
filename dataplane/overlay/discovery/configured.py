"""The peer sources an overlay configuration names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataplane import wire

from .base import PeerSource
from .dns import DnsSource
from .kubernetes import KubernetesSource
from .static import StaticSource

if TYPE_CHECKING:
    from ..config import OverlayConfig


def _server(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep:
        return (text, wire.DNS_PORT)
    return (host.strip("[]"), int(port))


def sources_from_config(config: OverlayConfig) -> list[PeerSource]:
    """The sources an :class:`OverlayConfig` names: static peers, DNS, Kubernetes Services."""
    own = frozenset(a for a in (config.local,) if a)
    sources: list[PeerSource] = []
    if config.peers:
        sources.append(StaticSource(config.peers))
    if config.peers_dns:
        sources.append(
            DnsSource(config.peers_dns, server=_server(config.peers_dns_server), self_addresses=own)
        )
    for spec in config.peers_kubernetes:
        namespace, _, service = spec.rpartition("/")
        sources.append(
            KubernetesSource.from_environment(
                namespace or None, service, self_addresses=own, api_url=config.kubernetes_api
            )
        )
    return sources
