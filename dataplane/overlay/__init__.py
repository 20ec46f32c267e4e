"""The VXLAN overlay (kubelan, done better): the sans-I/O VTEP core and the node agent.

``from dataplane.overlay import Vtep`` gives the compiled twin (``_vtep``) unless
``WEBSPACES_NO_EXTENSIONS=1`` or it was not built; ``dataplane.overlay.vtep`` always names the
pure-Python twin. Events, drop reasons and results live in :mod:`.events`, shared by both twins.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

from dataplane.wire import _select

from .events import FDB_TRANSITIONS as FDB_TRANSITIONS
from .events import Drop as Drop
from .events import EntryState as EntryState
from .events import Event as Event
from .events import FdbEntry as FdbEntry
from .events import MacAged as MacAged
from .events import MacEvicted as MacEvicted
from .events import MacFlushed as MacFlushed
from .events import MacLearned as MacLearned
from .events import MacMoved as MacMoved
from .events import PeerAdded as PeerAdded
from .events import PeerRemoved as PeerRemoved
from .events import PeersChanged as PeersChanged
from .events import Transmit as Transmit

if TYPE_CHECKING:  # mypy sees the pure-Python twin, whose API the compiled one shares
    from .vtep import Vtep as Vtep
else:
    _module: ModuleType = _select.load("vtep", __name__)
    Vtep = _module.Vtep


def implementation() -> str:
    """``"cython"`` when :class:`Vtep` is the compiled twin, else ``"python"``."""
    return _select.implementation(_select.load("vtep", __name__))
