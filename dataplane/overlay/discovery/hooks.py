"""kubelan's hooks: operator commands run when the device comes up and after each peer change.

A hook is an argv run with the agent's environment plus its own variables (``IFACE``; for a change
also ``SERVICE``, ``IPS`` space-separated and ``DELETED``, spec 2.5). A hook is advisory: one that
cannot start, exits non-zero or runs over its timeout is logged and the agent goes on (kubelan
parity). One that runs over is killed with its process group, so a stuck hook and whatever it
started leave nothing behind; so is one still running when the agent stops (cancellation).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

from .base import log

__all__ = ["HOOK_TIMEOUT", "hook_service", "run_change_hook", "run_hook"]

HOOK_TIMEOUT = 60.0


def hook_service(source: str) -> str:
    """kubelan's ``SERVICE`` for a source: ``ns/name`` for Kubernetes, else the source name."""
    return source[4:] if source.startswith("k8s:") else source


def _kill(process: asyncio.subprocess.Process) -> None:
    # The hook leads its own process group (process_group=0): kill the group, so a shell script's
    # children go with it; the leader by pid if the group is already gone.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


async def run_hook(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    what: str = "hook",
    timeout: float = HOOK_TIMEOUT,
) -> int | None:
    """Run ``argv`` with ``os.environ`` plus ``env``; its exit status, or None when it could not
    start or was killed for running over ``timeout`` seconds. Never raises but for cancellation."""
    if not argv:
        return None
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            process_group=0,
        )
    except OSError as exc:
        log.warning("%s %s could not start: %s", what, argv[0], exc)
        return None
    try:
        _, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        log.warning("%s %s ran over %g s; killed", what, argv[0], timeout)
        _kill(process)
        await process.wait()
        return None
    except asyncio.CancelledError:
        if process.returncode is None:
            _kill(process)
            await process.wait()
        raise
    if process.returncode:
        text = err.decode(errors="replace").strip()
        log.warning("%s %s exited %s: %s", what, argv[0], process.returncode, text)
    return process.returncode


async def run_change_hook(
    argv: Sequence[str],
    *,
    interface: str,
    source: str,
    addresses: Sequence[str],
    deleted: bool,
    timeout: float = HOOK_TIMEOUT,
) -> int | None:
    """The change hook for one direction of one source's change, with kubelan's environment."""
    env = {
        "IFACE": interface,
        "SERVICE": hook_service(source),
        "IPS": " ".join(addresses),
        "DELETED": "true" if deleted else "false",
    }
    return await run_hook(argv, env, what="change hook", timeout=timeout)
