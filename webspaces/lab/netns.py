"""Network namespaces, veth pairs and processes: the building blocks of the local lab, the real-peer
tests and the benchmarks (one implementation for all three, DESIGN.md).

Theory of operation. Everything a :class:`NetLab` makes carries a prefix unique to this process and
lab, so parallel or leftover runs cannot collide, and :meth:`NetLab.close` removes all of it, even
after a failure: the processes it started (by pid and the process group each leads, never by name),
then its netlink sockets, then its namespaces (which takes their links). Addresses are the caller's
business and must come from the documentation ranges (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24) or 172.24.0.0/16, and only inside these namespaces.

Every netlink job goes through pyroute2, as everywhere in product code: namespaces are made and
removed with :mod:`pyroute2.netns` (the ``/run/netns`` bind mounts ``ip netns`` uses, so ``ip``
and our namespaces see each other), links, addresses and routes with one :class:`~pyroute2.IPRoute`
socket per namespace, opened inside it. A sysctl is written by a short-lived thread that joins the
namespace first (``/proc/sys/net`` shows the writer's namespace). A program runs inside a namespace
the way ``ip netns exec`` runs it, without ``ip``: between fork and exec the child joins the
namespace (setns), takes a private mount namespace and mounts a sysfs of its own on ``/sys``, so
``/sys/class/net`` lists the namespace's links; it is exec'd in place, so its pid is the one we
hold.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import ipaddress
import itertools
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["LabError", "NetLab", "can_run", "in_namespace", "run_in", "stop_process", "wait_for"]

NETNS_DIR = "/run/netns"  # where ip-netns(8) and pyroute2 keep the namespaces' bind mounts
NAME_MAX = 15  # IFNAMSIZ - 1: the longest interface name; namespaces get the same limit

# <sched.h> and <sys/mount.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_REC = 0x4000
MS_SLAVE = 0x80000
MNT_DETACH = 0x2
ST_RDONLY = 0x1

_labs = itertools.count()
_libc: Any = None


def _c() -> Any:
    """libc through ctypes, loaded once in the parent (a forked child must not dlopen)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


class LabError(RuntimeError):
    """A lab step failed; the message names the step and the system's reason."""


def can_run() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not Path("/proc/self/ns/net").exists():
        return "needs a kernel with network namespaces"
    return None


def _join(name: str) -> None:
    """Join the network namespace ``name`` (this thread only, or this process once it is one)."""
    fd = os.open(f"{NETNS_DIR}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _c().setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns {name}: {os.strerror(code)}")
    finally:
        os.close(fd)


def in_namespace(name: str) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child see namespace ``name`` as ``ip netns exec`` does: its
    network namespace, a private mount namespace (nothing propagates back) and its own ``/sys``.

    It runs between fork and exec, where a threaded parent's locks may be held by threads that no
    longer exist: so it does little but system calls, through a libc loaded beforehand (no imports,
    no logging)."""
    libc = _c()

    def enter() -> None:
        _join(name)
        if libc.unshare(CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        if libc.mount(b"", b"/", b"none", MS_SLAVE | MS_REC, None) != 0:
            raise OSError(ctypes.get_errno(), "making / a slave mount")
        flags = 0
        if libc.umount2(b"/sys", MNT_DETACH) != 0 and os.statvfs("/sys").f_flag & ST_RDONLY:
            flags = MS_RDONLY  # a read-only /sys we cannot unmount can only be shadowed read-only
        if libc.mount(name.encode(), b"/sys", b"sysfs", flags, None) != 0:
            raise OSError(ctypes.get_errno(), "mounting /sys")

    return enter


def _in_thread(name: str, job: Callable[[], None]) -> None:
    """Run ``job`` on a fresh thread that has joined namespace ``name``; the thread then ends, so
    no thread of ours stays in a namespace it was not made for."""
    failure: list[BaseException] = []

    def body() -> None:
        try:
            _join(name)
            job()
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


class NetLab:
    def __init__(self, tag: str = "w") -> None:
        # ≤ 15 characters per interface name: tag + pid digits + lab number + short suffix.
        self.prefix = f"{tag[:2]}{os.getpid() % 10000}{next(_labs) % 100}"
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self._sockets: dict[str | None, Any] = {}
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> NetLab:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for process in reversed(self.processes):
            stop_process(process)
        for ipr in self._sockets.values():
            with contextlib.suppress(Exception):
                ipr.close()
        self._sockets.clear()
        for name in reversed(self.namespaces):
            self._remove_namespace(name)

    @staticmethod
    def _remove_namespace(name: str) -> None:
        from pyroute2 import netns  # noqa: PLC0415 - netlink only when a lab is built

        with contextlib.suppress(OSError):
            netns.remove(name)

    # -- netlink -----------------------------------------------------------------------------

    def ipr(self, ns: str | None = None) -> Any:
        """The lab's netlink socket in ``ns`` (None: this process's own namespace)."""
        ipr = self._sockets.get(ns)
        if ipr is None:
            from pyroute2 import IPRoute  # noqa: PLC0415

            try:
                ipr = IPRoute() if ns is None else IPRoute(netns=ns, flags=0)
            except OSError as exc:
                raise LabError(f"netlink socket in {ns or 'this namespace'}: {exc}") from None
            self._sockets[ns] = ipr
        return ipr

    def _netlink(self, what: str, job: Callable[[], Any]) -> Any:
        from pyroute2 import NetlinkError  # noqa: PLC0415

        try:
            return job()
        except (NetlinkError, OSError) as exc:
            raise LabError(f"{what} failed: {exc}") from None

    def index(self, ns: str | None, dev: str) -> int:
        """The ifindex of ``dev`` in ``ns``; LabError if there is none."""
        found = self._netlink(f"looking up {dev} in {ns}", lambda: self.ipr(ns).link_lookup(ifname=dev))
        if not found:
            raise LabError(f"no link {dev} in namespace {ns or '(this one)'}")
        return int(found[0])

    # -- building ----------------------------------------------------------------------------

    def name(self, suffix: str) -> str:
        name = f"{self.prefix}{suffix}"
        if len(name) > NAME_MAX:
            raise LabError(f"interface/namespace name {name!r} is longer than {NAME_MAX} characters")
        return name

    def namespace(self, suffix: str) -> str:
        """A new namespace with IPv6 off (no RS/NS/MLD noise) and loopback up."""
        from pyroute2 import netns  # noqa: PLC0415

        name = self.name(suffix)
        if os.path.exists(f"{NETNS_DIR}/{name}"):
            raise LabError(f"namespace {name} exists already")
        try:
            netns.create(name)
        except Exception as exc:  # pyroute2 re-raises the child's error by name
            self._remove_namespace(name)  # a half-made bind mount must not outlive us
            raise LabError(f"creating namespace {name} failed: {exc}") from None
        self.namespaces.append(name)
        self.sysctl(name, "net.ipv6.conf.all.disable_ipv6", "1")
        self.sysctl(name, "net.ipv6.conf.default.disable_ipv6", "1")
        self.link_up(name, "lo")
        return name

    def sysctl(self, ns: str, key: str, value: str | int) -> None:
        """Write ``key`` (dotted, as sysctl(8) names it) inside ``ns``."""
        path = Path("/proc/sys", *key.split("."))

        def write() -> None:
            path.write_text(f"{value}\n")

        try:
            _in_thread(ns, write)
        except OSError as exc:
            raise LabError(f"sysctl {key}={value} in {ns} failed: {exc}") from None

    def link_up(self, ns: str | None, dev: str) -> None:
        index = self.index(ns, dev)
        self._netlink(f"setting {dev} up in {ns}", lambda: self.ipr(ns).link("set", index=index, state="up"))

    def set_mtu(self, ns: str | None, dev: str, mtu: int) -> None:
        index = self.index(ns, dev)
        self._netlink(
            f"setting the MTU of {dev} in {ns}", lambda: self.ipr(ns).link("set", index=index, mtu=mtu)
        )

    def move(self, dev: str, ns: str, *, rename: str | None = None, source: str | None = None) -> None:
        """Move link ``dev`` from ``source`` (None: this namespace) into ``ns``, renamed if asked."""
        index = self.index(source, dev)
        changes: dict[str, Any] = {"net_ns_fd": ns}
        if rename is not None:
            changes["ifname"] = rename
        self._netlink(f"moving {dev} into {ns}", lambda: self.ipr(source).link("set", index=index, **changes))

    def veth(self, ns_a: str, dev_a: str, ns_b: str, dev_b: str, mtu: int = 1500) -> None:
        """A veth pair with one end in each namespace, both up."""
        tmp_a, tmp_b = self.name("xa"), self.name("xb")
        self._netlink(
            f"creating veth {tmp_a}/{tmp_b}",
            lambda: self.ipr().link(
                "add", ifname=tmp_a, kind="veth", mtu=mtu, peer={"ifname": tmp_b, "mtu": mtu}
            ),
        )
        try:
            self.move(tmp_a, ns_a, rename=dev_a)
            self.move(tmp_b, ns_b, rename=dev_b)
        except LabError:
            # One end still in this namespace: delete it (and so its peer) rather than leave it.
            for tmp in (tmp_a, tmp_b):
                with contextlib.suppress(LabError):
                    index = self.index(None, tmp)
                    self._netlink(f"deleting {tmp}", lambda: self.ipr().link("del", index=index))  # noqa: B023
            raise
        self.link_up(ns_a, dev_a)
        self.link_up(ns_b, dev_b)

    def bridge(self, ns: str, name: str) -> None:
        """A Linux bridge ``name`` in ``ns``, up."""
        self._netlink(
            f"creating bridge {name} in {ns}", lambda: self.ipr(ns).link("add", ifname=name, kind="bridge")
        )
        self.link_up(ns, name)

    def enslave(self, ns: str, dev: str, master: str) -> None:
        """Make ``dev`` a port of bridge ``master`` (both in ``ns``)."""
        index, master_index = self.index(ns, dev), self.index(ns, master)
        self._netlink(
            f"adding {dev} to {master} in {ns}",
            lambda: self.ipr(ns).link("set", index=index, master=master_index),
        )

    def vxlan(
        self,
        ns: str,
        dev: str,
        *,
        vni: int,
        local: str,
        link: str,
        port: int = 4789,
        mtu: int | None = None,
        mac: str | None = None,
    ) -> None:
        """A kernel VXLAN device (RFC 7348) ``dev`` in ``ns`` on ``link``, left down: the attributes
        ``ip link add DEV type vxlan id VNI local LOCAL dstport PORT dev LINK`` sends (learning on,
        the rest the kernel's defaults), with the MTU and MAC address if given."""
        spec: dict[str, Any] = {
            "ifname": dev,
            "kind": "vxlan",
            "vxlan_id": vni,
            "vxlan_local": local,
            "vxlan_port": port,
            "vxlan_link": self.index(ns, link),
            "vxlan_learning": 1,
        }
        if mtu is not None:
            spec["mtu"] = mtu
        if mac is not None:
            spec["address"] = mac
        self._netlink(f"creating vxlan {dev} in {ns}", lambda: self.ipr(ns).link("add", **spec))

    def fdb_append(self, ns: str, dev: str, mac: str, dst: str) -> None:
        """Append a forwarding entry ``mac`` -> remote ``dst`` to VXLAN ``dev`` (all zeros: the
        default destination, which floods to every such entry), as ``bridge fdb append`` does:
        permanent, on the device itself."""
        index = self.index(ns, dev)
        self._netlink(
            f"appending {mac} dst {dst} to the fdb of {dev} in {ns}",
            lambda: self.ipr(ns).fdb("append", ifindex=index, lladdr=mac, dst=dst),
        )

    def delete_link(self, ns: str | None, dev: str) -> None:
        """Delete link ``dev`` in ``ns``; LabError if there is none."""
        index = self.index(ns, dev)
        self._netlink(f"deleting {dev} in {ns}", lambda: self.ipr(ns).link("del", index=index))

    def flush_neighbours(self, ns: str) -> None:
        """Forget the IPv4/IPv6 neighbours ``ns`` has learned, as ``ip neigh flush all`` does: the
        permanent and NOARP entries stay, and so do entries without a state."""
        from pyroute2 import NetlinkError  # noqa: PLC0415
        from pyroute2.netlink.rtnl.ndmsg import NUD_NOARP, NUD_PERMANENT  # noqa: PLC0415

        keep = NUD_PERMANENT | NUD_NOARP
        ipr = self.ipr(ns)

        def flush() -> None:
            for entry in ipr.neigh("dump"):
                if entry["family"] not in (socket.AF_INET, socket.AF_INET6) or not entry["state"] & ~keep:
                    continue
                with contextlib.suppress(NetlinkError):  # gone since the dump
                    ipr.neigh(
                        "del",
                        family=entry["family"],
                        ifindex=entry["ifindex"],
                        dst=entry.get_attr("NDA_DST"),
                    )

        self._netlink(f"flushing the neighbours in {ns}", flush)

    def address(self, ns: str, dev: str, cidr: str) -> None:
        """Add ``cidr`` (``address/prefix``) to ``dev`` in ``ns`` (no broadcast, as ``ip addr add``)."""
        interface = ipaddress.ip_interface(cidr)
        index = self.index(ns, dev)
        self._netlink(
            f"adding {cidr} to {dev} in {ns}",
            lambda: self.ipr(ns).addr(
                "add", index=index, address=str(interface.ip), prefixlen=interface.network.prefixlen
            ),
        )

    def route(self, ns: str, destination: str, *, gateway: str | None = None, dev: str | None = None) -> None:
        """A route to ``destination`` (a prefix, or ``default``) via ``gateway`` and/or ``dev``."""
        # proto boot, as ip-route(8) marks the routes it adds
        spec: dict[str, Any] = {"dst": "0.0.0.0/0" if destination == "default" else destination, "proto": 3}
        if gateway is not None:
            spec["gateway"] = gateway
        if dev is not None:
            spec["oif"] = self.index(ns, dev)
        self._netlink(f"adding the route to {destination} in {ns}", lambda: self.ipr(ns).route("add", **spec))

    # -- running -----------------------------------------------------------------------------

    def sh(self, argv: Sequence[str], timeout: float = 30) -> str:
        """Run ``argv`` in this namespace; its stdout, or LabError when it fails."""
        return self._checked(argv, self._run(None, argv, timeout))

    def run(self, ns: str, argv: Sequence[str], timeout: float = 30) -> str:
        """Run ``argv`` inside ``ns``; its stdout, or LabError when it fails."""
        return self._checked(argv, self._run(ns, argv, timeout))

    def try_run(
        self, ns: str, argv: Sequence[str], timeout: float = 30, *, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``ns`` and return how it went, whatever it was."""
        return self._run(ns, argv, timeout, env)

    @staticmethod
    def _checked(argv: Sequence[str], result: subprocess.CompletedProcess[str]) -> str:
        if result.returncode != 0:
            raise LabError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    @staticmethod
    def _run(
        ns: str | None, argv: Sequence[str], timeout: float, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_in(ns, argv, timeout, env=env)

    def spawn(
        self,
        ns: str,
        argv: Sequence[str],
        *,
        log: Path | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        pipe: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``ns``; it is stopped (by pid) when the lab closes.

        Its output goes to ``log`` (else nowhere); with ``pipe``, only its stderr does, and its
        stdout is the returned process's ``stdout`` pipe."""
        out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - owned by the process
        try:
            process = subprocess.Popen(
                list(argv),
                stdout=subprocess.PIPE if pipe else out,
                stderr=out if pipe else subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=in_namespace(ns),  # noqa: PLW1509 - see in_namespace
            )
        except (OSError, subprocess.SubprocessError) as exc:
            reason = exc if os.path.exists(f"{NETNS_DIR}/{ns}") else f"no namespace {ns}"
            raise LabError(f"starting {argv[0]} in {ns} failed: {reason}") from None
        finally:
            if log is not None and not isinstance(out, int):
                out.close()
        self.processes.append(process)
        return process


def run_in(
    ns: str | None, argv: Sequence[str], timeout: float = 30, *, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside namespace ``ns`` (None: this one) and return how it went, as
    :meth:`NetLab.try_run` does, for code that holds a namespace's name but not its lab."""
    if ns is not None and not os.path.exists(f"{NETNS_DIR}/{ns}"):
        return subprocess.CompletedProcess(list(argv), 255, "", f"no namespace {ns}")
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
            preexec_fn=None if ns is None else in_namespace(ns),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        if isinstance(exc, subprocess.TimeoutExpired):
            raise
        # What ip netns exec reports when it cannot exec: status 255 and the reason.
        return subprocess.CompletedProcess(list(argv), 255, "", f"{argv[0]}: {exc}")


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; only this pid and the group it leads."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(grace)


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
