"""The benchmark harness, run in-process on its scenarios with ``--quick``: layout, not timings."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from benchmarks import harness
from benchmarks.scenarios import overlay
from dataplane.wire import _select
from tests.conftest import require

IMPLS = {"cython-batch", "python-batch", "cython-per-frame", "python-per-frame", "dpkt", "scapy"}
RATIOS = {
    "batch_ns_per_frame",
    "batch_vs_dpkt",
    "batch_vs_per_frame",
    "batch_vs_pure_python",
    "per_frame_vs_dpkt",
    "scapy_vs_batch",
}


def test_wire_quick_report_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require(_select.compiled("batch") is not None, "the compiled twin dataplane.wire._batch is not built")
    path = tmp_path / "wire.json"
    assert harness.main(["run", "wire", "--quick", "--json", str(path)]) == 0
    document = json.loads(path.read_text())
    assert {"scenario", "machine", "command", "started", "results", "ratios"} <= document.keys()
    assert document["scenario"] == "wire"
    assert document["command"] == f"python -m benchmarks run wire --quick --json {path}"
    assert {"cpu", "cores", "memory_bytes", "kernel", "python", "implementation"} <= document[
        "machine"
    ].keys()
    for result in document["results"]:
        assert set(result) == {"name", "impl", "value", "unit"}
        assert result["value"] > 0
    assert {result["impl"] for result in document["results"]} == IMPLS
    assert document["ratios"].keys() >= RATIOS
    assert all(math.isfinite(value) and value > 0 for value in document["ratios"].values())
    assert ET.fromstring(path.with_suffix(".svg").read_text()).tag.endswith("svg")
    out = capsys.readouterr().out
    assert "batch_vs_dpkt" in out and "cython-batch" in out


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert harness.main(["list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == ["overlay", "wire"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "nope"], "unknown scenario 'nope'; valid: overlay, wire, all"),
        (["run", "all", "--json", "x.json"], "--json-dir"),
        (["run", "wire", "--json", "/nonexistent/dir/x.json"], "does not exist"),
    ],
)
def test_bad_input(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert harness.main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_subcommand_exits_2() -> None:
    with pytest.raises(SystemExit) as info:
        harness.main(["frobnicate"])
    assert info.value.code == 2


def test_svg_escapes_and_scales() -> None:
    document = {
        "scenario": "x<y",
        "description": "a & b",
        "results": [
            {"name": "n", "impl": "<i>", "value": 0.5, "unit": "ns"},
            {"name": "n", "impl": "j", "value": 5e5, "unit": "ns"},
        ],
        "ratios": {},
    }
    root = ET.fromstring(harness.render_svg(document))
    assert len(root.findall("{http://www.w3.org/2000/svg}rect")) == 3


OVERLAY_IMPLS = {"kernel-vxlan", "ours-compiled", "ours-pure"}
OVERLAY_RATIOS = {
    "tcp_vs_kernel",
    "tcp_vs_pure_python",
    "rtt_p99_vs_kernel",
    "rtt_p50_vs_kernel",
    "pps_64b",
    "pps_vs_kernel",
    "pps_64b_per_agent_core",
}


@pytest.mark.net
def test_overlay_quick_report_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require(os.geteuid() == 0, "needs root (network namespaces)")
    require(shutil.which("iperf3") is not None, "needs iperf3")
    require(shutil.which("nft") is not None, "needs nft")
    require(importlib.util.find_spec("dataplane.io._pump") is not None, "dataplane.io._pump is not built")
    path = tmp_path / "overlay.json"
    assert harness.main(["run", "overlay", "--quick", "--json", str(path)]) == 0
    document = json.loads(path.read_text())
    assert document["scenario"] == "overlay"
    assert document["command"] == f"python -m benchmarks run overlay --quick --json {path}"
    for result in document["results"]:
        assert set(result) == {"name", "impl", "value", "unit"}
        assert result["value"] > 0
    names = {(result["name"], result["impl"]) for result in document["results"]}
    for name in ("tcp 1 stream", "udp 64B delivered", "rtt p50", "rtt p99"):
        assert {(name, impl) for impl in OVERLAY_IMPLS} <= names
    assert document["ratios"].keys() == OVERLAY_RATIOS
    assert all(math.isfinite(value) and value > 0 for value in document["ratios"].values())
    assert set(document["notes"]["runs"]) == OVERLAY_IMPLS
    assert ET.fromstring(path.with_suffix(".svg").read_text()).tag.endswith("svg")
    assert "tcp_vs_kernel" in capsys.readouterr().out


def test_overlay_missing_prerequisite_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(overlay, "can_run", lambda: "needs root (network namespaces)")
    assert harness.main(["run", "overlay", "--quick"]) == 2
    assert "overlay scenario: needs root" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("output", "times"),
    [
        ("64 bytes from 198.51.100.2: icmp_seq=1 ttl=64 time=0.038 ms\n", [0.038]),
        ("PING x\n64 bytes from x: icmp_seq=2 ttl=64 time=1.25 ms\n\n--- x ---\nrtt min/avg", [1.25]),
    ],
)
def test_overlay_parsers(output: str, times: list[float]) -> None:
    assert overlay.ping_times(output) == times
    assert overlay.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert overlay.percentile([float(k) for k in range(1, 101)], 0.99) == 99.0
    assert overlay.prometheus_values('# HELP\na{stat="x"} 4.0\nb 2\n') == {'a{stat="x"}': 4.0, "b": 2.0}
