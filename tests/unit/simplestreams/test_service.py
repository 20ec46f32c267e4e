"""``webspaces images serve`` as a user runs it: a real process, real sockets, signals, exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from simplestreams.synthetic import write_release

CLI = [sys.executable, "-m", "webspaces.cli", "images"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(*args: str, state: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = free_port()
    log = state.parent / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*CLI, "serve", "--listen", f"127.0.0.1:{port}", "--state-dir", str(state), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"server exited {process.returncode}: {log.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    if response.status == 204:
                        break
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        else:
            raise AssertionError(f"server never became healthy: {log.read_text()}")
        yield process, port, log
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def https_get(port: int, path: str, cafile: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(cafile))
    with urllib.request.urlopen(f"https://localhost:{port}{path}", context=context, timeout=5) as response:
        body: bytes = response.read()
        return body


def test_serve_publishes_a_directory_and_stops_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "images"
    write_release(root, "busybox", "1.0.0", ["amd64"])
    state = tmp_path / "state"
    with serving("--backend", f"directory:{root}", "--scan-interval", "0.2", state=state) as (
        process,
        port,
        log,
    ):
        images = json.loads(https_get(port, "/streams/v1/images.json", state / "tls.crt"))
        assert sorted(images["products"]) == ["busybox:amd64"]
        write_release(root, "busybox", "1.1.0", ["amd64"])  # picked up while serving
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            images = json.loads(https_get(port, "/streams/v1/images.json", state / "tls.crt"))
            if len(images["products"]["busybox:amd64"]["versions"]) == 2:
                break
            time.sleep(0.2)
        assert len(images["products"]["busybox:amd64"]["versions"]) == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0, log.read_text()
    caches = list(state.glob("hashes-directory-*.json"))
    assert len(caches) == 1 and caches[0].stat().st_size > 0  # a restart hashes nothing again
    certificate = (state / "tls.crt").read_bytes()
    with serving("--backend", f"directory:{root}", state=state) as (_, port, log):
        assert (state / "tls.crt").read_bytes() == certificate  # kept: LXD clients pin it
        assert "1 products, 2 versions, 0 skipped" in log.read_text()


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--ttl", "soon"], 2, "ttl (from --ttl)"),
        (["--listen", "127.0.0.1:http"], 2, "not HOST:PORT"),
        (["--backend", "directory:/nonexistent/images"], 1, "not a directory"),
    ],
)
def test_start_up_errors_exit_with_a_message(
    tmp_path: Path, args: list[str], status: int, message: str
) -> None:
    result = subprocess.run(
        [*CLI, "serve", "--state-dir", str(tmp_path / "state"), "--listen", "127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == status, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "images").mkdir()
        result = subprocess.run(
            [
                *CLI,
                "serve",
                "--backend",
                f"directory:{tmp_path / 'images'}",
                "--state-dir",
                str(tmp_path / "state"),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_check_lists_versions_and_skips(tmp_path: Path) -> None:
    root = tmp_path / "images"
    write_release(root, "busybox", "1.0.0", ["amd64"])
    bad = root / "broken" / "v1.0.0"
    bad.mkdir(parents=True)
    (bad / "lxd.amd64.tar.xz").write_bytes(b"not a tarball")
    (bad / "rootfs.amd64.squashfs").write_bytes(b"hsqs")
    result = subprocess.run(
        [*CLI, "check", str(root), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert sorted(report["products"]) == ["busybox:amd64"]
    assert [s["subject"].split()[0] for s in report["skipped"]] == ["broken/v1.0.0"]
    strict = subprocess.run(
        [*CLI, "check", str(root), "--strict"], capture_output=True, text=True, timeout=60, check=False
    )
    assert strict.returncode == 1
    assert "skipped broken/v1.0.0" in strict.stderr
