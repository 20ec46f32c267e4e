"""The frame-handler interface: what a pump calls for every frame (pure-Python twin of ``_handler``).

A pump moves batches between ports and hands each frame to one handler: a sans-I/O core that
decides where frames go and owns no descriptor and no clock. The overlay's VTEP
(``dataplane.overlay.vtep.Vtep``) is one implementation; the router's core is meant to be another,
with the same pump. The pure-Python pump calls the methods of :class:`FrameHandler` below; the
compiled pump calls the C-level methods of ``_handler.FrameHandler`` (``_handler.pxd``), which a
compiled core subclasses.

Timers: a handler reports its next deadline (:meth:`FrameHandler.next_deadline`), so the program
driving the pump sleeps until a frame or that deadline arrives instead of polling on a fixed tick.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["FrameHandler"]  # and Transmission, what its send returns


class Transmission(Protocol):
    """What :meth:`FrameHandler.send` decided for one frame."""

    @property
    def payload(self) -> bytes: ...  # the datagram payload (encapsulation header + frame)

    @property
    def destinations(self) -> tuple[str, ...]: ...  # underlay addresses; empty: dropped

    @property
    def reply(self) -> bytes | None: ...  # a frame to write back to the TAP (ICMP), if any


class FrameHandler(Protocol):
    """A core the pump hands frames to; ``port`` is the underlay UDP port datagrams go to."""

    @property
    def port(self) -> int: ...

    def receive(self, payload: bytes, src: str, now: float) -> bytes | None:
        """The inner frame to write to the TAP for a datagram from ``src``, or None (dropped)."""
        ...

    def send(self, frame: bytes, now: float) -> Transmission:
        """Where a frame read from the TAP goes, as a datagram payload per destination."""
        ...

    def source_port(self, frame: bytes) -> int:
        """The outer UDP source port for ``frame`` (its flow hash, RFC 7348 §5)."""
        ...

    def next_deadline(self, now: float) -> float | None:
        """The earliest monotonic time the handler has work without a frame; None: no timer."""
        ...
