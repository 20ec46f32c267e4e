"""Start and stop a real LXD daemon on a machine without systemd (spec/simplestreams.md §8).

The LXD tier and the local lab need Debian's ``lxd`` running. On a systemd host the units do that;
on the CI machine (a fresh Debian 12 container, no systemd as PID 1) nothing does, so
:func:`ensure_running` does what the units would: ``lxcfs`` on ``/var/lib/lxcfs`` (optional: LXD
runs without it, containers then see the host's /proc figures), then ``lxd --group root`` in the
background, ``lxd waitready``, and a network-free initialisation: a ``dir`` storage pool named
``default``, the root disk of the default profile on it, and ``images.auto_update_interval=0`` so an
offline daemon never refreshes images in the background (§2.4).

Safety: it never creates a managed network, a bridge or anything with NAT. Containers of the tests
have no NIC at all, so nothing they run can reach beyond the machine.

A daemon that already answers on its socket (started by systemd, by another test run or by the lab)
is used as it is and never stopped: only what :func:`ensure_running` started itself is stopped by
:meth:`Daemon.stop`, by PID.

The daemon is driven through its REST API over the unix socket with the standard library, so this
module works without pylxd (the lab imports it too).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("tests.lxd.daemon")

LXD_DIR = Path("/var/lib/lxd")
SOCKET = LXD_DIR / "unix.socket"
LXCFS_DIR = Path("/var/lib/lxcfs")
POOL = "default"
WAIT_READY = 120.0  # seconds; `lxd waitready` returns in about 0.6 s on a healthy machine (§8)
STOP_TIMEOUT = 60.0
DEAD_PROXY = "http://127.0.0.1:9"  # nothing listens on the discard port: connections are refused
_PROXY_VARIABLES = (("HTTP_PROXY", "http_proxy"), ("HTTPS_PROXY", "https_proxy"), ("NO_PROXY", "no_proxy"))


class DaemonError(RuntimeError):
    """LXD could not be started, initialised or reached; the message says what and where the log is."""


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over LXD's unix socket (the daemon's local API, no TLS, no client certificate)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("lxd", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(str(self._path))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def api(method: str, path: str, body: Any = None, *, timeout: float = 30.0, sock: Path = SOCKET) -> Any:
    """One synchronous REST call; returns the ``metadata`` of a sync response (or the operation of an
    async one). Raises :class:`DaemonError` with LXD's own error text on an error response."""
    connection = _UnixConnection(sock, timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        text = response.read()
    finally:
        connection.close()
    try:
        document = json.loads(text)
    except ValueError:
        raise DaemonError(f"{method} {path}: not JSON ({response.status}): {text[:200]!r}") from None
    if document.get("type") == "error":
        raise DaemonError(f"{method} {path}: {document.get('error')} ({document.get('error_code')})")
    return document.get("metadata")


def answers(sock: Path = SOCKET, timeout: float = 5.0) -> bool:
    """True when a daemon answers ``GET /1.0`` on ``sock``."""
    if not sock.exists():
        return False
    try:
        api("GET", "/1.0", timeout=timeout, sock=sock)
    except (OSError, DaemonError, http.client.HTTPException):
        return False
    return True


def _mounted(path: Path) -> str | None:
    """The file-system type mounted at ``path``, or None."""
    target = str(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 4 and fields[4] == target:
                after = fields.index("-")
                return fields[after + 1]
    return None


def _wait_gone(process: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def _end(process: subprocess.Popen[bytes], name: str) -> None:
    """SIGTERM, then SIGKILL after a bounded wait: only our own child, by PID."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    if not _wait_gone(process, 15):
        log.warning("%s (pid %d) ignored SIGTERM for 15 s; killing it", name, process.pid)
        process.kill()
        _wait_gone(process, 15)


@dataclass
class Daemon:
    """A running LXD: either ours (``started``) or one that was already there (left alone)."""

    log_path: Path
    lxd_dir: Path = LXD_DIR
    direct: tuple[str, ...] = ()  # hosts or CIDRs the daemon may reach without the dead proxy
    started: bool = False
    lxd: subprocess.Popen[bytes] | None = None
    lxcfs: subprocess.Popen[bytes] | None = None
    mounted_lxcfs: bool = False
    changes: list[str] = field(default_factory=list)  # what initialise() changed, for the report
    _logs: list[IO[bytes]] = field(default_factory=list, repr=False)

    @property
    def socket(self) -> Path:
        return self.lxd_dir / "unix.socket"

    def environment(self) -> dict[str, str]:
        """The environment for ``lxd``/``lxc`` commands addressing this daemon.

        Outbound HTTP(S) goes to a proxy that refuses connections (port 9 on loopback): at start-up
        LXD fetches instance types from images.linuxcontainers.org, and the tests must send nothing
        beyond the machine. Loopback is never proxied (LXD's proxy rules, like Go's, exempt it), so
        pulls from our servers on 127.0.0.1 go direct; ``direct`` adds hosts or CIDRs for a lab."""
        dropped = {"LXD_DIR", "LXD_SOCKET", *(name for pair in _PROXY_VARIABLES for name in pair)}
        environment = {k: v for k, v in os.environ.items() if k not in dropped}
        if self.lxd_dir != LXD_DIR:
            environment["LXD_DIR"] = str(self.lxd_dir)
        no_proxy = ",".join(("127.0.0.1", "localhost", "::1", *self.direct))
        for upper, lower in _PROXY_VARIABLES:
            value = no_proxy if upper == "NO_PROXY" else DEAD_PROXY
            environment[upper] = environment[lower] = value
        return environment

    def api(self, method: str, path: str, body: Any = None, *, timeout: float = 30.0) -> Any:
        return api(method, path, body, timeout=timeout, sock=self.socket)

    def cache_dir(self) -> Path:
        """Where this daemon keeps simplestreams JSON (§2.3), as LXD's shared.CachePath has it:
        /var/cache/lxd, or $LXD_DIR/cache for a daemon started with LXD_DIR."""
        return cache_dir(self.lxd_dir)

    def log_tail(self, limit: int = 4000) -> str:
        """The end of the daemon log we wrote (empty for a daemon we did not start)."""
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Shut down what we started (containers of the tests are already deleted): ``lxd shutdown``
        bounded in time, then our lxcfs by PID, then unmount /var/lib/lxcfs if we mounted it."""
        if not self.started:
            return
        try:
            if self.lxd is not None and self.lxd.poll() is None:
                try:
                    subprocess.run(
                        ["lxd", "shutdown", "--timeout", str(int(STOP_TIMEOUT))],
                        check=False,
                        capture_output=True,
                        timeout=STOP_TIMEOUT + 10,
                        env=self.environment(),
                    )
                except subprocess.TimeoutExpired:
                    log.warning("lxd shutdown did not return within %.0f s", STOP_TIMEOUT + 10)
                if not _wait_gone(self.lxd, 20):
                    _end(self.lxd, "lxd")
            if self.lxcfs is not None:
                _end(self.lxcfs, "lxcfs")
            if self.mounted_lxcfs and _mounted(LXCFS_DIR):
                subprocess.run(["umount", "-l", str(LXCFS_DIR)], check=False, capture_output=True, timeout=30)
        finally:
            for handle in self._logs:
                handle.close()
            self._logs.clear()
            self.started = False


def _start_lxcfs(daemon: Daemon) -> None:
    """lxcfs in the foreground as our child, unless something is mounted there already. Failing is
    not fatal: LXD starts without it (containers then see the host's /proc values)."""
    if _mounted(LXCFS_DIR) is not None:
        return
    lxcfs = shutil.which("lxcfs")
    if lxcfs is None:
        log.warning("lxcfs not installed; LXD runs without it")
        return
    LXCFS_DIR.mkdir(parents=True, exist_ok=True)
    handle = daemon.log_path.with_name(daemon.log_path.name + ".lxcfs").open("ab")
    daemon._logs.append(handle)
    pidfile = daemon.log_path.with_name(daemon.log_path.name + ".lxcfs.pid")
    process = subprocess.Popen(
        [lxcfs, "--foreground", f"--pidfile={pidfile}", str(LXCFS_DIR)],
        stdin=subprocess.DEVNULL,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        if _mounted(LXCFS_DIR) is not None:
            daemon.lxcfs = process
            daemon.mounted_lxcfs = True
            return
        time.sleep(0.05)
    _end(process, "lxcfs")
    log.warning(
        "lxcfs did not mount %s within 10 s (exit %s); LXD runs without it", LXCFS_DIR, process.poll()
    )


def _start_lxd(daemon: Daemon) -> None:
    lxd = shutil.which("lxd")
    if lxd is None:
        raise DaemonError("lxd is not installed (Debian: apt-get install lxd lxd-client)")
    handle = daemon.log_path.with_name(daemon.log_path.name + ".stdout").open("ab")
    daemon._logs.append(handle)
    daemon.lxd_dir.mkdir(parents=True, exist_ok=True)
    daemon.lxd = subprocess.Popen(
        [lxd, "--group", "root", f"--logfile={daemon.log_path}"],
        stdin=subprocess.DEVNULL,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=daemon.environment(),
    )
    deadline = time.monotonic() + WAIT_READY
    while time.monotonic() < deadline:
        if daemon.lxd.poll() is not None:
            raise DaemonError(
                f"lxd exited with status {daemon.lxd.returncode} while starting; log {daemon.log_path}:\n"
                + daemon.log_tail()
            )
        result = subprocess.run(
            ["lxd", "waitready", "--timeout=2"],
            check=False,
            capture_output=True,
            timeout=30,
            env=daemon.environment(),
        )
        if result.returncode == 0 and answers(daemon.socket):
            return
    raise DaemonError(
        f"lxd was not ready within {WAIT_READY:.0f} s; log {daemon.log_path}:\n{daemon.log_tail()}"
    )


def initialise(daemon: Daemon) -> None:
    """Idempotent, network-free set-up: a ``dir`` pool ``default`` (kept if any pool of that name
    exists), the default profile's root disk on it (kept if it has one) and auto-update off (§8)."""
    pools = [p.rsplit("/", 1)[-1] for p in daemon.api("GET", "/1.0/storage-pools")]
    if POOL not in pools:
        daemon.api("POST", "/1.0/storage-pools", {"name": POOL, "driver": "dir", "config": {}})
        daemon.changes.append(f"created the dir storage pool {POOL!r}")
    profile = daemon.api("GET", "/1.0/profiles/default")
    devices = dict(profile.get("devices") or {})
    if not any(d.get("type") == "disk" and d.get("path") == "/" for d in devices.values()):
        devices["root"] = {"type": "disk", "path": "/", "pool": POOL}
        daemon.api("PATCH", "/1.0/profiles/default", {"devices": devices})
        daemon.changes.append("added a root disk to the default profile")
    config = daemon.api("GET", "/1.0").get("config") or {}
    if str(config.get("images.auto_update_interval")) != "0":
        daemon.api("PATCH", "/1.0", {"config": {"images.auto_update_interval": "0"}})
        daemon.changes.append("set images.auto_update_interval=0")


def ensure_running(log_path: Path, lxd_dir: Path = LXD_DIR, *, direct: Sequence[str] = ()) -> Daemon:
    """A ready, initialised LXD. Reuses one that answers on ``<lxd_dir>/unix.socket`` (never stopped
    by us); otherwise starts lxcfs and lxd as our children, logging to ``log_path`` (and siblings).
    Another ``lxd_dir`` gives a second, independent daemon (LXD_DIR), e.g. to test this module."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    daemon = Daemon(log_path=log_path, lxd_dir=lxd_dir, direct=tuple(direct))
    if not answers(daemon.socket):
        if os.geteuid() != 0:
            raise DaemonError("starting LXD needs root")
        daemon.started = True
        try:
            _start_lxcfs(daemon)
            _start_lxd(daemon)
        except BaseException:
            daemon.stop()
            raise
    try:
        initialise(daemon)
    except BaseException:
        daemon.stop()
        raise
    return daemon


def cache_dir(lxd_dir: Path = LXD_DIR) -> Path:
    """Where a daemon keeps simplestreams JSON (§2.3): /var/cache/lxd (seen on Debian's 5.0.2), or
    ``$LXD_DIR/cache`` for a daemon started with LXD_DIR set (LXD's shared.CachePath)."""
    return Path("/var/cache/lxd") if lxd_dir == LXD_DIR else lxd_dir / "cache"
