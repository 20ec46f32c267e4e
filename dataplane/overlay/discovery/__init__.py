"""Peer discovery for the overlay agent: where the list of peer VTEPs comes from (spec 2.2, 2.6).

Theory of operation. A *source* knows one list of peers and publishes it, always whole, whenever it
changes: a static list once; the A records of a DNS name, re-resolved at their TTL; or the IPv4
endpoints of a Kubernetes Service's EndpointSlices, listed then watched. A source never publishes a
partial list, so the consumer can diff: :class:`PeerSet` applies each source's list to the VTEP by
difference (``set_peers(source, addresses)``, which reference-counts addresses across sources),
reports per-source changes (``on_change`` and the kubelan change hook) and says whether every source
has delivered and applied a complete list (spec 2.6.3: the agent is healthy only then).

One module per part: :mod:`.base` (the source protocol and what sources share), :mod:`.static`,
:mod:`.dns` and :mod:`.kubernetes` (the sources), :mod:`.peerset` (the aggregator), :mod:`.hooks`
(kubelan's up and change hooks: the one hook runner, which kills a hook that runs over) and
:mod:`.configured` (the sources a configuration names).

A failing source (DNS timeout, API server unreachable) keeps its last good list applied and retries
with exponential backoff, logging once per failure streak rather than per attempt; an empty answer
(NXDOMAIN, no endpoints) is a complete, empty list and is applied as such.

Differences from kubelan (spec 2.2, 2.4): EndpointSlices ``discovery.k8s.io/v1`` watched per namespace
with the ``kubernetes.io/service-name`` label selector instead of every slice of the cluster; a slice
update is applied as its difference, not as remove-all-then-add-all; an address listed by two sources
stays a peer until both drop it; endpoints count whatever their ready/serving/terminating conditions.
"""

from .base import DiscoveryError, PeerSource, Publish
from .configured import sources_from_config
from .dns import DnsSource, ResolvConf, read_resolv_conf
from .hooks import HOOK_TIMEOUT, hook_service, run_change_hook, run_hook
from .kubernetes import SERVICE_ACCOUNT_DIR, SERVICE_NAME_LABEL, KubernetesSource, slice_addresses
from .peerset import Apply, OnChange, PeerHealth, PeerSet, SourceHealth
from .static import StaticSource

__all__ = [
    "HOOK_TIMEOUT",
    "SERVICE_ACCOUNT_DIR",
    "SERVICE_NAME_LABEL",
    "Apply",
    "DiscoveryError",
    "DnsSource",
    "KubernetesSource",
    "OnChange",
    "PeerHealth",
    "PeerSet",
    "PeerSource",
    "Publish",
    "ResolvConf",
    "SourceHealth",
    "StaticSource",
    "hook_service",
    "read_resolv_conf",
    "run_change_hook",
    "run_hook",
    "slice_addresses",
    "sources_from_config",
]
