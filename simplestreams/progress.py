"""How ``webspaces images build`` and ``add`` show their progress: stages with totals, drawn as a bar
on a terminal, one line per stage in a log or pipe, or nothing (:func:`progress_for`).

Publishing (:mod:`.publish`) and packing (:mod:`.builder`) report into a :class:`Progress`; which one
a run gets is the command line's choice (:mod:`.command`).
"""

from __future__ import annotations

import shutil
import time
from typing import IO, Protocol


class Progress(Protocol):
    """Where a build or an add reports its stages; :func:`progress_for` picks one for a stream."""

    @property
    def detailed(self) -> bool:
        """True when :meth:`update` is shown (worth running mksquashfs under a pseudo-terminal)."""
        ...

    def stage(self, title: str, total: int | None = None, unit: str = "") -> None:
        """A new stage begins; ``total`` in ``unit`` ("B" for bytes) when known."""
        ...

    def update(self, done: int, total: int | None = None) -> None:
        """``done`` of the stage's total so far (and the total, when it was learned late)."""
        ...

    def close(self) -> None:
        """The work ended: finish the last line."""
        ...


class LineProgress:
    """One plain line per stage, for logs and pipes."""

    detailed = False

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def stage(self, title: str, total: int | None = None, unit: str = "") -> None:
        self._stream.write(f"{title}\n")
        self._stream.flush()

    def update(self, done: int, total: int | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class BarProgress:
    """A one-line bar per stage, redrawn in place on a terminal at most ten times a second."""

    detailed = True
    _INTERVAL = 0.1

    def __init__(self, stream: IO[str], width: int | None = None) -> None:
        self._stream = stream
        self._width = width or shutil.get_terminal_size((80, 24)).columns
        self._title = ""
        self._total: int | None = None
        self._unit = ""
        self._done = 0
        self._drawn_at = 0.0
        self._open = False

    def stage(self, title: str, total: int | None = None, unit: str = "") -> None:
        self._finish_line()
        self._title, self._total, self._unit, self._done = title, total, unit, 0
        self._open = True
        self._draw()

    def update(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self._total = total
        self._done = done
        now = time.monotonic()
        if now - self._drawn_at >= self._INTERVAL or (self._total is not None and done >= self._total):
            self._draw()

    def close(self) -> None:
        self._finish_line()

    def _finish_line(self) -> None:
        if self._open:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()
            self._open = False

    def _draw(self) -> None:
        self._drawn_at = time.monotonic()
        head = f"{self._title:<18}"
        if self._total is None or self._total <= 0:
            line = head
        else:
            fraction = min(1.0, self._done / self._total)
            amounts = f"{_amount(self._done, self._unit)}/{_amount(self._total, self._unit)}"
            if self._unit not in ("", "B"):
                amounts += f" {self._unit}"
            tail = f" {fraction * 100:3.0f}% {amounts}"
            room = max(10, self._width - len(head) - len(tail) - 4)
            filled = int(room * fraction)
            line = f"{head} [{'#' * filled}{'.' * (room - filled)}]{tail}"
        self._stream.write(f"\r{line[: self._width - 1]}\x1b[K")
        self._stream.flush()


def _amount(value: int, unit: str) -> str:
    if unit != "B":
        return str(value)
    size = float(value)
    for suffix in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or suffix == "GiB":
            return f"{size:.0f} {suffix}" if suffix == "B" else f"{size:.1f} {suffix}"
        size /= 1024
    raise AssertionError("unreachable")


def progress_for(stream: IO[str], *, quiet: bool = False) -> Progress | None:
    """A bar on a terminal, one line per stage otherwise, nothing when ``quiet``."""
    if quiet:
        return None
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return BarProgress(stream)
    return LineProgress(stream)


class SilentProgress:
    """Progress nobody sees (``progress=None``)."""

    detailed = False

    def stage(self, title: str, total: int | None = None, unit: str = "") -> None:
        pass

    def update(self, done: int, total: int | None = None) -> None:
        pass

    def close(self) -> None:
        pass
