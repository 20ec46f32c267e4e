"""Shared test set-up.

Prerequisites (root, namespaces, LXD, a peer program, the compiled extensions) go through
:func:`require`: on a developer's machine a missing one skips with its reason, but when ``CI`` is set
it fails, so CI can never go green by skipping the real-peer tiers.
"""

from __future__ import annotations

import os
import shutil
from types import ModuleType

import pytest

from dataplane.wire import _select

IN_CI = bool(os.environ.get("CI"))


def require(condition: bool, reason: str) -> None:
    """Skip (or, under CI, fail) the calling test unless ``condition`` holds."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_tools(*tools: str) -> None:
    """Require root and network namespaces (``webspaces.lab.netns.can_run``) and each program on PATH."""
    from webspaces.lab.netns import can_run  # noqa: PLC0415 - only the net tier needs it

    reason = can_run()
    require(reason is None, reason or "")
    for tool in tools:
        require(shutil.which(tool) is not None, f"needs {tool} (scripts/setup-host.sh installs it)")


def twins(name: str) -> tuple[ModuleType, ModuleType]:
    """The pure-Python and compiled twins of ``dataplane.wire.<name>``, for equivalence tests."""
    compiled = _select.compiled(name)
    require(compiled is not None, f"the compiled twin dataplane.wire._{name} is not built")
    assert compiled is not None
    return _select.pure(name), compiled
