"""The benchmark harness, run in-process on the ``wire`` scenario with ``--quick``: layout, not timings."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from benchmarks import harness
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
    assert capsys.readouterr().out.startswith("wire")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "nope"], "unknown scenario 'nope'; valid: wire"),
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
