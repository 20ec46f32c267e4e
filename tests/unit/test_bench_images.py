"""The ``images`` benchmark scenario: its wrk parser and nginx config, and a ``--quick`` run (layout, not
timings) against the real server, nginx and wrk."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from benchmarks import harness
from benchmarks.scenarios import images
from tests.conftest import require

WRK_OUTPUT = """Running 3s test @ https://127.0.0.1:43071/streams/v1/images.json
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.45ms    2.01ms  25.40ms   81.22%
    Req/Sec     9.25k   512.33    10.01k    70.00%
  Latency Distribution
     50%  640.00us
     75%    4.39ms
     90%    6.46ms
     99%    1.07s
  27657 requests in 3.01s, 2.58GB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   9200.68
Transfer/sec:    877.12MB
"""


def test_parse_wrk() -> None:
    parsed = images.parse_wrk(WRK_OUTPUT)
    assert parsed["rps"] == 9200.68
    assert parsed["p50_ms"] == pytest.approx(0.64)
    assert parsed["p75_ms"] == pytest.approx(4.39)
    assert parsed["p99_ms"] == pytest.approx(1070.0)
    assert (parsed["requests"], parsed["seconds"]) == (27657, pytest.approx(3.01))
    assert parsed["bytes_read"] == pytest.approx(2.58 * 1024**3)
    assert parsed["socket_errors"] == {"connect": 0, "read": 3, "write": 0, "timeout": 1}
    assert parsed["non_2xx"] == 7
    clean = images.parse_wrk(WRK_OUTPUT.replace("  Non-2xx or 3xx responses: 7\n", ""))
    assert clean["non_2xx"] == 0


@pytest.mark.parametrize(
    "output",
    [
        "",
        "unable to connect to 127.0.0.1:1 Connection refused\n",
        WRK_OUTPUT.replace("     90%    6.46ms\n", ""),
    ],
)
def test_parse_wrk_refuses_an_incomplete_report(output: str) -> None:
    with pytest.raises(images.BenchError):
        images.parse_wrk(output)


def test_wrk_run_view() -> None:
    run = images.WrkRun(
        "ours",
        "https",
        1000.0,
        1.0,
        2.0,
        3.0,
        4.0,
        3000,
        3.0,
        3000 * 1024.0,
        server_cpu_s=1.5,
        wrk_cpu_s=0.75,
    )
    view = run.view()
    assert view["bytes_per_response"] == 1024
    assert view["server_cpu_share"] == 0.5 and view["wrk_cpu_share"] == 0.25
    assert view["requests_per_server_cpu_s"] == 2000


def test_nginx_config_is_valid(tmp_path: Path) -> None:
    require(shutil.which("nginx") is not None, "needs nginx (Debian package nginx-light)")
    require(shutil.which("openssl") is not None, "needs openssl")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=127.0.0.1", "-days", "1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    (tmp_path / "root").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(images.nginx_config(tmp_path, tmp_path / "root", {"http": 1, "https": 2}, cert, key))
    text = conf.read_text()
    assert "worker_processes 1;" in text and "access_log off;" in text and "listen 127.0.0.1:2 ssl;" in text
    result = subprocess.run(
        ["nginx", "-t", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_missing_prerequisite_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "wrk" else f"/usr/bin/{tool}")
    assert harness.main(["run", "images", "--quick"]) == 2
    assert "images scenario: needs wrk on PATH (Debian package wrk)" in capsys.readouterr().err


IMAGES_RATIOS = {
    "rps_vs_nginx",
    "rps_vs_nginx_http",
    "index_1000_s",
    "per_cpu_vs_nginx",
    "per_cpu_vs_nginx_http",
    "download_vs_nginx_http",
    "download_vs_nginx",
}


@pytest.mark.net
def test_images_quick_report_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for tool, package in (("wrk", "wrk"), ("nginx", "nginx-light"), ("curl", "curl")):
        require(shutil.which(tool) is not None, f"needs {tool} (Debian package {package})")
    path = tmp_path / "images.json"
    assert harness.main(["run", "images", "--quick", "--json", str(path)]) == 0
    document = json.loads(path.read_text())
    assert document["scenario"] == "images"
    assert document["command"] == f"python -m benchmarks run images --quick --json {path}"
    for result in document["results"]:
        assert set(result) == {"name", "impl", "value", "unit"}
        assert result["value"] > 0
    names = {(result["name"], result["impl"]) for result in document["results"]}
    for scheme in ("https", "http"):
        for name in (
            f"images.json {scheme}",
            f"images.json {scheme} per server CPU-s",
            f"{scheme} latency p99",
            f"rootfs download {images.QUICK.download_mib} MiB {scheme}",
        ):
            assert {(name, "ours"), (name, "nginx")} <= names
    assert document["ratios"].keys() == IMAGES_RATIOS
    assert all(math.isfinite(value) and value > 0 for value in document["ratios"].values())
    notes = document["notes"]
    assert sorted(notes["index"]["products"].values()) == [1000, 1000]
    assert len(notes["index"]["warm_restart_s"]) == images.QUICK.warm_builds
    assert notes["corpus"]["images_json_bytes"] > 0
    runs = notes["runs"]
    assert {(run["impl"], run["scheme"]) for run in runs} == {
        (impl, scheme) for impl in images.IMPLS for scheme in images.SCHEMES
    }
    assert all(run["non_2xx"] == 0 and run["requests"] > 0 for run in runs)
    assert all(run["bytes_per_response"] >= notes["corpus"]["images_json_bytes"] * 0.98 for run in runs)
    assert ET.fromstring(path.with_suffix(".svg").read_text()).tag.endswith("svg")
    assert "rps_vs_nginx" in capsys.readouterr().out
