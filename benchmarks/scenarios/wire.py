"""``wire``: VXLAN decap + inner IPv4 rewrite + re-encap, per frame, across implementations.

One deterministic corpus of VXLAN-encapsulated Ethernet/IPv4 UDP and TCP frames (mixed sizes, valid
checksums) is built with ``struct`` and our checksum code. Every implementation runs the same
pipeline on a prefix of it: parse outer Ethernet/IPv4/UDP/VXLAN and the inner frame, rewrite the
inner destination address and port (checksums updated), re-encapsulate towards the sender.

* ``cython-batch`` / ``python-batch``: :mod:`dataplane.wire.batch` (``vxlan_decap``,
  ``rewrite_ipv4``, ``vxlan_encap``) in batches of 256; only the three calls are timed (loading a
  batch stands in for ``recvmmsg``).
* ``cython-per-frame`` / ``python-per-frame``: the per-frame codecs (``pull_*``/``push_*`` on a
  ``Buffer``, dataclass headers), RFC 1624 incremental checksum updates.
* ``dpkt``: no VXLAN class, so the 8-byte header is sliced by hand; checksums recomputed by dpkt.
* ``scapy``: the whole packet parsed and rebuilt (slow: a small prefix of the corpus).

Which of these the product runs: the per-frame codecs are what the VTEP (its ICMP replies) and the
DHCP server frame with; :mod:`dataplane.wire.batch` is the router's planned data path and no
product path calls it yet. What the overlay's data path runs per frame is timed in the ratios
``gso_*`` and ``deliver_*``: :func:`dataplane.wire.gso.segment` and
:func:`~dataplane.wire.gso.deliver_header`, whose compiled twins wrap ``_gso.build`` and
``_gso.deliver_flags``, the very C functions the compiled tunnel pump (``dataplane.pump._tunnel``)
calls on its buffers for every TAP read and every decapsulated frame it writes alone (software
TSO of a 64 KiB TCP super-frame into 1398-byte segments; the delivery header of a 1400-byte
segment).

Values are the best of several repeats in ns per frame. Before timing, every implementation's output
for a sample is checked: identical inner frames, and outer headers that our decap accepts.
"""

from __future__ import annotations

import importlib
import logging
import random
import struct
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from dataplane import wire
from dataplane.wire import batch as pure_batch
from dataplane.wire import checksum as pure_checksum
from dataplane.wire import gso as pure_gso

from ..harness import Options, Report, Result, Scenario, register

VNI = 4242
PORT = 4789
LOCAL = bytes([192, 0, 2, 100])  # the VTEP doing the work; peers are 192.0.2.1-8
LOCAL_MAC = bytes.fromhex("020000000064")
PEER_MAC = bytes.fromhex("020000000001")
NEW_DST = bytes([172, 24, 0, 254])  # Traefik, as a port forward would rewrite
NEW_PORT = 8080
BATCH = 256
SAMPLE = 200  # frames whose output every implementation must agree on

# Inner payload sizes: small (ACKs, DNS), medium, near the 1450-byte overlay MTU.
SIZES = (0, 6, 32, 64, 120, 200, 512, 576, 1000, 1200, 1350, 1380)

# (impl, frames measured in a full run, in a quick run)
FULL = {
    "cython-batch": 100_000,
    "python-batch": 20_000,
    "cython-per-frame": 100_000,
    "python-per-frame": 20_000,
    "dpkt": 50_000,
    "scapy": 2_000,
}
QUICK = {
    "cython-batch": 20_000,
    "python-batch": 1_000,
    "cython-per-frame": 2_000,
    "python-per-frame": 1_000,
    "dpkt": 2_000,
    "scapy": 200,
}

Pipeline = Callable[[list[bytes]], list[bytes]]


# -- corpus ----------------------------------------------------------------------------------------------


def build_corpus(count: int, seed: int) -> list[bytes]:
    """``count`` VXLAN frames: outer 192.0.2.x:490xx -> LOCAL:4789, inner LAN TCP/UDP with valid sums."""
    rng = random.Random(seed)
    pool = rng.randbytes(4096)
    ip_header = struct.Struct("!BBHHHBBH4s4s")
    frames = []
    for k in range(count):
        size = rng.choice(SIZES)
        start = rng.randrange(0, len(pool) - size)
        payload = pool[start : start + size]
        src = bytes([172, 24, rng.randrange(1, 254), rng.randrange(1, 255)])
        dst = bytes([203, 0, 113, rng.randrange(1, 255)])
        sport, dport = rng.randrange(32768, 61000), rng.choice((80, 443, 53, 22, 8443))
        if k % 2:
            proto = 17
            segment = bytearray(struct.pack("!HHHH", sport, dport, 8 + size, 0) + payload)
            where = 6
        else:
            proto = 6
            header = struct.pack(
                "!HHIIHHHH", sport, dport, rng.getrandbits(32), rng.getrandbits(32), 0x5018, 502, 0, 0
            )
            segment = bytearray(header + payload)
            where = 16
        check = wire.transport_checksum(src, dst, proto, segment)
        if proto == 17:
            check = wire.udp_wire_checksum(check)
        segment[where : where + 2] = check.to_bytes(2, "big")
        ip = bytearray(ip_header.pack(0x45, 0, 20 + len(segment), k & 0xFFFF, 0x4000, 64, proto, 0, src, dst))
        ip[10:12] = wire.internet_checksum(ip).to_bytes(2, "big")
        inner = (
            bytes.fromhex("02000000aa01")
            + bytes([2, 0, 0, 0, 0xAA, 2 + k % 200])
            + b"\x08\x00"
            + ip
            + segment
        )
        peer = bytes([192, 0, 2, 1 + k % 8])
        udp = struct.pack("!HHHH", 49152 + rng.randrange(16384), PORT, 16 + len(inner), 0)
        vxlan = struct.pack("!II", 0x08000000, VNI << 8)
        outer = bytearray(ip_header.pack(0x45, 0, 36 + len(inner), 0, 0x4000, 64, 17, 0, peer, LOCAL))
        outer[10:12] = wire.internet_checksum(outer).to_bytes(2, "big")
        frames.append(LOCAL_MAC + PEER_MAC + b"\x08\x00" + bytes(outer) + udp + vxlan + inner)
    return frames


# -- implementations -------------------------------------------------------------------------------------


def batch_pipeline(module: ModuleType) -> Callable[[list[bytes]], tuple[list[bytes], int]]:
    """Run the batch API over ``frames``; returns (outputs, ns spent inside the three calls)."""

    def run(frames: list[bytes]) -> tuple[list[bytes], int]:
        batch = module.FrameBatch(BATCH, 2048, 64)
        outputs: list[bytes] = []
        spent = 0
        clock = time.perf_counter_ns
        for start in range(0, len(frames), BATCH):
            batch.clear()
            batch.extend(frames[start : start + BATCH])
            began = clock()
            module.vxlan_decap(batch, VNI, PORT)
            module.rewrite_ipv4(batch, dst_addr=NEW_DST, dst_port=NEW_PORT)
            module.vxlan_encap(batch, LOCAL, None, VNI, src_mac=LOCAL_MAC, dst_mac=PEER_MAC, port=PORT)
            spent += clock() - began
            if start < SAMPLE:
                outputs += [batch.frame(i) for i in range(batch.count)]
        return outputs[:SAMPLE], spent

    return run


def _codecs(compiled: bool) -> dict[str, Any]:
    """The per-frame codec functions of one implementation (compiled modules are ``_name``)."""
    prefix = "dataplane.wire._" if compiled else "dataplane.wire."
    names: dict[str, Any] = {}
    for module_name in ("buffer", "checksum", "ethernet", "ipv4", "udp", "tcp", "vxlan"):
        module = importlib.import_module(prefix + module_name)
        names.update({key: getattr(module, key) for key in module.__all__})
    return names


def per_frame_pipeline(compiled: bool) -> Pipeline:
    c = _codecs(compiled)
    buffer_type = c["Buffer"]
    pull_ethernet, push_ethernet, ethernet_header = (
        c["pull_ethernet"],
        c["push_ethernet"],
        c["EthernetHeader"],
    )
    pull_ipv4, push_ipv4, ipv4_header = c["pull_ipv4"], c["push_ipv4"], c["IPv4Header"]
    pull_udp, push_udp, udp_header = c["pull_udp"], c["push_udp"], c["UdpHeader"]
    pull_tcp, push_tcp = c["pull_tcp"], c["push_tcp"]
    pull_vxlan, push_vxlan, vxlan_header = c["pull_vxlan"], c["push_vxlan"], c["VxlanHeader"]
    update16, update32, source_port_for = c["update16"], c["update32"], c["source_port_for"]
    new_dst = int.from_bytes(NEW_DST, "big")

    def run(frames: list[bytes]) -> list[bytes]:
        outputs = []
        for frame in frames:
            buf = buffer_type(frame)
            pull_ethernet(buf)
            outer = pull_ipv4(buf)
            udp = pull_udp(buf)
            vxlan = pull_vxlan(buf)
            if outer.protocol != 17 or udp.dst_port != PORT or not vxlan.flags & 0x08 or vxlan.vni != VNI:
                continue
            eth = pull_ethernet(buf)
            ip = pull_ipv4(buf)
            l4 = pull_udp(buf) if ip.protocol == 17 else pull_tcp(buf)
            payload = buf.pull_bytes(
                ip.total_length - ip.ihl * 4 - (8 if ip.protocol == 17 else l4.data_offset * 4)
            )
            old = int.from_bytes(ip.dst, "big")
            ip.dst = NEW_DST
            ip.checksum = update32(ip.checksum, old, new_dst)
            check = update16(update32(l4.checksum, old, new_dst), l4.dst_port, NEW_PORT)
            l4.dst_port = NEW_PORT
            if ip.protocol != 17 or l4.checksum:  # UDP checksum 0 means none (RFC 768)
                l4.checksum = check if check or ip.protocol != 17 else 0xFFFF
            inner = buffer_type()
            push_ethernet(inner, eth)
            push_ipv4(inner, ip, compute_checksum=False)
            (push_udp if ip.protocol == 17 else push_tcp)(inner, l4)
            inner.push_bytes(payload)
            inner_bytes = inner.data
            out = buffer_type()
            push_ethernet(out, ethernet_header(dst=PEER_MAC, src=LOCAL_MAC))
            push_ipv4(
                out,
                ipv4_header(
                    total_length=36 + len(inner_bytes),
                    dont_fragment=True,
                    protocol=17,
                    src=LOCAL,
                    dst=outer.src,
                ),
            )
            push_udp(
                out,
                udp_header(
                    src_port=source_port_for(inner_bytes), dst_port=PORT, length=16 + len(inner_bytes)
                ),
            )
            push_vxlan(out, vxlan_header(vni=VNI))
            out.push_bytes(inner_bytes)
            outputs.append(out.data)
        return outputs

    return run


# dpkt and scapy are test/benchmark dependencies, imported when used: without them the scenario
# still runs and reports the implementation as missing (scapy also takes a second to import).


def dpkt_pipeline() -> Pipeline:
    import dpkt  # noqa: PLC0415

    ethernet = dpkt.ethernet.Ethernet

    def run(frames: list[bytes]) -> list[bytes]:
        outputs = []
        for frame in frames:
            eth = ethernet(frame)
            ip = eth.data
            udp = ip.data
            if ip.p != 17 or udp.dport != PORT:
                continue
            data = udp.data
            flags, word = struct.unpack_from("!II", data)
            if not flags & 0x08000000 or word >> 8 != VNI:
                continue
            inner = ethernet(data[8:])
            inner_ip = inner.data
            inner_ip.dst = NEW_DST
            inner_ip.data.dport = NEW_PORT
            inner_ip.sum = 0  # dpkt recomputes zeroed IP and TCP/UDP checksums on bytes()
            inner_ip.data.sum = 0
            udp.data = data[:8] + bytes(inner)
            udp.ulen = 8 + len(udp.data)
            ip.data = bytes(udp)  # as bytes, so dpkt leaves the outer UDP checksum at 0
            ip.src, ip.dst = LOCAL, ip.src
            ip.sum = 0
            eth.src, eth.dst = LOCAL_MAC, PEER_MAC
            eth.data = ip
            outputs.append(bytes(eth))
        return outputs

    return run


def scapy_pipeline() -> Pipeline:
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    from scapy.layers.inet import IP  # noqa: PLC0415
    from scapy.layers.l2 import Ether  # noqa: PLC0415
    from scapy.layers.vxlan import VXLAN  # noqa: PLC0415

    def run(frames: list[bytes]) -> list[bytes]:
        outputs = []
        for frame in frames:
            packet = Ether(frame)
            if VXLAN not in packet or packet[VXLAN].vni != VNI:
                continue
            outer = packet[IP]
            inner_ip = packet[VXLAN].payload[IP]
            inner_ip.dst = ".".join(map(str, NEW_DST))
            del inner_ip.chksum
            inner_ip.payload.dport = NEW_PORT
            del inner_ip.payload.chksum
            outer.src, outer.dst = ".".join(map(str, LOCAL)), outer.src
            del outer.chksum
            packet.src, packet.dst = LOCAL_MAC.hex(":"), PEER_MAC.hex(":")
            outputs.append(bytes(packet))
        return outputs

    return run


# -- measuring ---------------------------------------------------------------------------------------------


def _check_outputs(outputs: dict[str, list[bytes]], corpus: list[bytes]) -> None:
    """Every implementation rewrote the sample identically, and its outer headers decapsulate."""
    reference_name, reference = next(iter(outputs.items()))
    if len(reference) != min(SAMPLE, len(corpus)):
        raise RuntimeError(
            f"{reference_name} produced {len(reference)} of {min(SAMPLE, len(corpus))} sample frames"
        )
    for impl, frames in outputs.items():
        count = len(frames)
        if count != len(reference):
            raise RuntimeError(f"{impl} produced {count} of {len(reference)} sample frames")
        for k in range(count):
            if frames[k][50:] != reference[k][50:]:
                raise RuntimeError(f"{impl} and {reference_name} disagree on the inner frame of sample {k}")
        check = pure_batch.FrameBatch(max(count, 1))
        check.extend(frames[:count])
        if pure_batch.vxlan_decap(check, VNI, PORT) != count:
            raise RuntimeError(f"{impl}: outer headers rejected: {check.drop_counts()}")
    # And the rewrite itself is right: fields changed, checksums verify from scratch.
    for frame in reference:
        inner = frame[50:]
        ihl = (inner[14] & 15) * 4
        segment = inner[14 + ihl :]
        if inner[30:34] != NEW_DST or struct.unpack_from("!H", segment, 2)[0] != NEW_PORT:
            raise RuntimeError("the rewrite did not change the destination")
        if pure_checksum.ones_sum(inner, 14, 14 + ihl) != 0xFFFF:
            raise RuntimeError("inner IPv4 header checksum does not verify")
        seed = pure_checksum.pseudo_header_sum(inner[26:30], inner[30:34], inner[23], len(segment))
        if pure_checksum.ones_sum(segment, 0, -1, seed) != 0xFFFF:
            raise RuntimeError("inner TCP/UDP checksum does not verify")


# -- the overlay data path's frame builders (dataplane.wire.gso) -------------------------------------------

GSO_SIZE = 1398  # the MSS of a 1450-byte overlay MTU with TCP timestamps


def super_frame() -> tuple[bytes, bytes]:
    """A TAP read (virtio-net header + 64 KiB TCPv4 super-frame, NEEDS_CSUM) and one plain segment."""
    payload = random.Random(1).randbytes(65536 - 54)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 20 + len(payload), 1, 0x4000, 64, 6, 0, LOCAL, NEW_DST)
    ip = ip[:10] + struct.pack("!H", pure_checksum.internet_checksum(ip)) + ip[12:]
    tcp = struct.pack("!HHIIBBHHH", 49152, NEW_PORT, 1000, 1, 5 << 4, 0x18, 65535, 0, 0)
    frame = PEER_MAC + LOCAL_MAC + b"\x08\x00" + ip + tcp + payload
    vnet = struct.pack("=BBHHHH", 1, 1, 54, GSO_SIZE, 34, 16)  # NEEDS_CSUM, TCPV4
    segment = pure_gso.segment(vnet + frame)[0]
    return vnet + frame, segment


def time_gso(module: ModuleType, rounds: int) -> tuple[float, float]:
    """ns per segment cut by ``module.segment``, and ns per ``module.deliver_header`` call."""
    data, segment = super_frame()
    count = len(module.segment(data))
    best_cut = best_deliver = float("inf")
    for _ in range(3):
        began = time.perf_counter_ns()
        for _ in range(rounds):
            module.segment(data)
        best_cut = min(best_cut, (time.perf_counter_ns() - began) / (rounds * count))
        began = time.perf_counter_ns()
        for _ in range(rounds * count):
            module.deliver_header(segment)
        best_deliver = min(best_deliver, (time.perf_counter_ns() - began) / (rounds * count))
    return best_cut, best_deliver


def run(options: Options) -> Report:
    sizes = QUICK if options.quick else FULL
    repeats = 2 if options.quick else 5
    started = time.perf_counter()
    corpus = build_corpus(max(sizes.values()), options.seed)
    built = time.perf_counter() - started

    batch_impls: dict[str, Callable[[list[bytes]], tuple[list[bytes], int]]] = {
        "python-batch": batch_pipeline(pure_batch)
    }
    frame_impls: dict[str, Pipeline] = {"python-per-frame": per_frame_pipeline(compiled=False)}
    missing: list[str] = []
    try:
        batch_impls = {
            "cython-batch": batch_pipeline(importlib.import_module("dataplane.wire._batch")),
            **batch_impls,
        }
    except ImportError:
        missing.append("cython-batch")
    try:
        frame_impls = {"cython-per-frame": per_frame_pipeline(compiled=True), **frame_impls}
    except ImportError:
        missing.append("cython-per-frame")
    for impl, factory in (("dpkt", dpkt_pipeline), ("scapy", scapy_pipeline)):
        try:
            frame_impls[impl] = factory()
        except ImportError:
            missing.append(impl)

    sample = corpus[:SAMPLE]
    outputs: dict[str, list[bytes]] = {impl: pipeline(sample)[0] for impl, pipeline in batch_impls.items()}
    outputs.update({impl: pipeline(sample[: sizes[impl]]) for impl, pipeline in frame_impls.items()})
    _check_outputs(outputs, corpus)

    ns: dict[str, float] = {}
    frames_measured: dict[str, int] = {}
    for impl, batch_run in batch_impls.items():
        frames = corpus[: sizes[impl]]
        ns[impl] = min(batch_run(frames)[1] for _ in range(repeats)) / len(frames)
        frames_measured[impl] = len(frames)
    for impl, frame_run in frame_impls.items():
        frames = corpus[: sizes[impl]]
        count = 1 if impl == "scapy" else repeats

        def timed(r: Pipeline = frame_run, f: list[bytes] = frames) -> int:
            began = time.perf_counter_ns()
            r(f)
            return time.perf_counter_ns() - began

        ns[impl] = min(timed() for _ in range(count)) / len(frames)
        frames_measured[impl] = len(frames)

    order = ["cython-batch", "python-batch", "cython-per-frame", "python-per-frame", "dpkt", "scapy"]
    results = [
        Result("decap+rewrite+encap", impl, round(ns[impl], 1), "ns/frame") for impl in order if impl in ns
    ]
    ratios: dict[str, float] = {}

    def ratio(name: str, numerator: str, denominator: str) -> None:
        if numerator in ns and denominator in ns:
            ratios[name] = round(ns[numerator] / ns[denominator], 2)

    if "cython-batch" in ns:
        ratios["batch_ns_per_frame"] = round(ns["cython-batch"], 1)
    ratio("batch_vs_dpkt", "dpkt", "cython-batch")
    ratio("batch_vs_per_frame", "cython-per-frame", "cython-batch")
    ratio("batch_vs_pure_python", "python-batch", "cython-batch")
    ratio("per_frame_vs_dpkt", "dpkt", "cython-per-frame")
    ratio("per_frame_vs_pure_python", "python-per-frame", "cython-per-frame")
    ratio("scapy_vs_batch", "scapy", "cython-batch")
    ratio("scapy_vs_dpkt", "scapy", "dpkt")
    gso_rounds = 20 if options.quick else 200
    pure_cut, pure_deliver = time_gso(pure_gso, max(1, gso_rounds // 20))
    try:
        compiled_gso = importlib.import_module("dataplane.wire._gso")
    except ImportError:
        missing.append("cython-gso")
    else:
        cut, deliver = time_gso(compiled_gso, gso_rounds)
        ratios["gso_segment_ns_per_segment"] = round(cut, 1)
        ratios["gso_segment_vs_pure_python"] = round(pure_cut / cut, 2)
        ratios["deliver_header_ns"] = round(deliver, 1)
        ratios["deliver_header_vs_pure_python"] = round(pure_deliver / deliver, 2)
    return Report(
        results=results,
        ratios=ratios,
        notes={
            "frames": frames_measured,
            "repeats": repeats,
            "corpus_frames": len(corpus),
            "corpus_bytes": sum(map(len, corpus)),
            "corpus_build_seconds": round(built, 2),
            "seed": options.seed,
            "missing": missing,
            "pipeline": "outer Eth/IPv4/UDP/VXLAN parse, inner IPv4 dst+port rewrite, re-encap to the sender",
            "product_functions": {
                "*-batch": "dataplane.wire.batch (the router's planned path; no product caller yet)",
                "*-per-frame": "the per-frame codecs (VTEP ICMP replies, DHCP framing)",
                "gso_segment_*": "dataplane.wire._gso.build, run by dataplane.pump._tunnel per TAP read",
                "deliver_header_*": "dataplane.wire._gso.deliver_flags, run by dataplane.pump._tunnel"
                " per frame written alone",
            },
        },
    )


register(
    Scenario(
        name="wire",
        description="VXLAN decap + inner IPv4 dst/port rewrite + re-encap (wire.batch, codecs), ns per "
        "frame; and the overlay pump's own frame builders (wire.gso: segment, deliver_header)",
        run=run,
    )
)
