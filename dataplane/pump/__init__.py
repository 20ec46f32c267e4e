"""Pumps: move batches of frames between I/O ports and hand each frame to a frame handler.

Neither a port nor a core: :mod:`dataplane.io` holds the ports (TAP, UDP) and imports no core; the
cores (the overlay's VTEP, the router's next) implement :mod:`.handler`'s interface and import no
port; a pump joins the two, so a second core reuses the pump instead of copying it.

* :mod:`.handler` (``_handler``): the frame-handler interface, a Protocol and, for the compiled
  path, a cdef base class in ``_handler.pxd`` that compiled cores subclass. It lives here, in
  neither ``dataplane.io`` nor a core's package, because the pump defines what it calls.
* :mod:`.tunnel` (``_tunnel``): the TAP <-> UDP tunnel pump: TAP reads (with ``IFF_VNET_HDR``
  offloads, segmented by :mod:`dataplane.wire.gso`) to encapsulated UDP datagrams (UDP GSO,
  ``sendmmsg``) and back (``recvmmsg``, UDP GRO, software GRO to the TAP). It is tunnel-specific
  (an 8-byte encapsulation header in UDP), not overlay-specific: which header and which peer is
  the handler's decision.
"""

from __future__ import annotations
