"""I/O ports of the packet engine: descriptors and sockets, and nothing that decides about frames.

* :mod:`.tap` opens or adopts a persistent TAP device with ``IFF_VNET_HDR`` offloads and sets its
  link (MTU, MAC, addresses, bridge) through pyroute2.
* :mod:`.udp` opens the underlay UDP socket, with UDP GSO/GRO where the kernel has them, and the
  pool of send sockets that carry the RFC 7348 §5 source ports.

Ports import no protocol core; the pumps that join ports to a core live in :mod:`dataplane.pump`.
"""

from __future__ import annotations

from .errors import IoError as IoError
