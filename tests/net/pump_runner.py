"""A minimal overlay node for tests and measurements: one TAP, one UDP socket, one pump, static peers.

A test tool, not the product agent (``webspaces overlay``): no discovery, no health endpoint. The
net tests run it inside a namespace they created::

    python -m tests.net.pump_runner --tap wsA --local 192.0.2.1 --peer 192.0.2.2 \\
        --address 198.51.100.1/24 --impl compiled --ready /tmp/ready --stats /tmp/stats.json

It writes ``--ready`` once the pump runs, and ``--stats`` (JSON) when it stops on SIGTERM/SIGINT
or after ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from dataplane.io.errors import IoError
from dataplane.io.tap import Tap
from dataplane.io.udp import SendPool, open_send_pool, open_udp, set_no_check
from dataplane.pump import tunnel as pure_pump
from dataplane.wire import _select


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.net.pump_runner")
    p.add_argument("--tap", required=True)
    p.add_argument("--local", required=True)
    p.add_argument("--peer", action="append", default=[])
    p.add_argument("--address", action="append", default=[])
    p.add_argument("--mac")
    p.add_argument("--mtu", type=int, default=1450)
    p.add_argument("--vni", type=int, default=4242)
    p.add_argument("--port", type=int, default=4789)
    p.add_argument("--impl", choices=("compiled", "pure"), default="compiled")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--no-gso", action="store_true")
    p.add_argument("--no-gro", action="store_true")
    p.add_argument("--no-offload", action="store_true", help="TAP without TSO/checksum offloads")
    p.add_argument(
        "--source-ports",
        type=int,
        default=16,
        help="send sockets on flow-hashed ports in 49152-65535 (0: send from --port)",
    )
    p.add_argument(
        "--udp-checksum",
        choices=("zero", "on"),
        default="on",
        help="outer UDP checksum of the send sockets (zero: SO_NO_CHECK, no UDP GSO)",
    )
    p.add_argument("--ready")
    p.add_argument("--stats")
    p.add_argument("--duration", type=float, default=600.0)
    return p


def _vtep(impl: str, args: argparse.Namespace) -> Any:

    module = (
        _select.compiled("vtep", "dataplane.overlay")
        if impl == "compiled"
        else _select.pure("vtep", "dataplane.overlay")
    )
    if module is None:
        raise SystemExit("the compiled VTEP dataplane.overlay._vtep is not built")
    vtep = module.Vtep(args.vni, args.local, port=args.port, mtu=args.mtu)
    vtep.set_peers("static", args.peer)
    return vtep


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    module = _select.compiled("tunnel", "dataplane.pump") if args.impl == "compiled" else pure_pump
    if module is None:
        print("the compiled pump dataplane.pump._tunnel is not built", file=sys.stderr)
        return 2
    try:
        tap = Tap.open(args.tap, offloads=0 if args.no_offload else 0x7F)
        tap.configure(mtu=args.mtu, mac=args.mac, addresses=args.address)
        udp = open_udp(args.local, args.port, gso=not args.no_gso, gro=not args.no_gro)
        zero = args.udp_checksum == "zero"
        pool = (
            open_send_pool(args.local, args.source_ports, checksum_zero=zero, gso=not args.no_gso)
            if args.source_ports
            else SendPool([], args.local, [], False, False, 0)
        )
    except IoError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    if zero and not pool.socks:
        set_no_check(udp.sock)
    gso = False if args.no_gso or zero else None
    pump = module.Pump(
        tap.fd, udp.sock, _vtep(args.impl, args), batch=args.batch, gso=gso, send_socks=pool.socks
    )
    if args.ready:
        Path(args.ready).write_text(
            json.dumps(
                {
                    "offloads": tap.offload_names,
                    "gso": pump.gso,
                    "gro": udp.gro,
                    "adopted": tap.adopted,
                    "source_ports": pool.ports,
                    "checksum_zero": pump.checksum_zero,
                }
            )
        )
    deadline = time.monotonic() + args.duration
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            pump.run_once(0.05)
    finally:
        if args.stats:
            Path(args.stats).write_text(json.dumps(pump.stats()))
        pump.close()
        pool.close()
        udp.close()
        tap.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
