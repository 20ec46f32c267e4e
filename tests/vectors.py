"""Test vectors kept as files under ``tests/data``, named after the test that uses them.

``.hex`` files hold one or more packets as hexadecimal text: blank lines separate packets, ``#``
starts a comment, whitespace inside a packet is ignored. ``.pcap`` files are captures made here
(see ``tests/data/wire/capture.sh``), read with dpkt's pcap reader.
"""

from __future__ import annotations

from pathlib import Path

import dpkt

DATA = Path(__file__).parent / "data"


def load_hex(relative: str) -> list[bytes]:
    packets: list[bytes] = []
    current: list[str] = []
    for line in (DATA / relative).read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            if current:
                packets.append(bytes.fromhex("".join(current)))
                current = []
            continue
        current.append(text.replace(" ", ""))
    if current:
        packets.append(bytes.fromhex("".join(current)))
    if not packets:
        raise AssertionError(f"{relative} holds no packets")
    return packets


def load_pcap(relative: str) -> list[bytes]:
    with (DATA / relative).open("rb") as handle:
        frames = [bytes(frame) for _, frame in dpkt.pcap.Reader(handle)]
    if not frames:
        raise AssertionError(f"{relative} holds no frames")
    return frames
