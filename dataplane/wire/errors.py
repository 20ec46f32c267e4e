"""Errors raised by the wire codecs.

Bad network input raises only :class:`MalformedPacket`, naming the field that could not be read;
``IndexError`` and ``struct.error`` never escape a codec (a fuzz test enforces it).
"""


class WireError(Exception):
    """Root of every error raised by :mod:`dataplane.wire`."""


class MalformedPacket(WireError, ValueError):  # noqa: N818 - the name the design documents
    """Input bytes do not form a valid packet.

    ``field`` names what could not be read (for example ``"ipv4.ihl"``); ``reason`` says why.
    """

    def __init__(self, field: str, reason: str = "truncated") -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type["MalformedPacket"], tuple[str, str]]:
        return (type(self), (self.field, self.reason))


class BufferWriteError(WireError, ValueError):
    """A push went past the end of a fixed-capacity buffer (a bug in the caller, not bad input)."""
