"""Fixtures of the LXD tier: a real LXD daemon pulling our images from our server (spec §8).

* ``lxd`` (session): LXD started without systemd when none is running (:mod:`tests.lxd.lxd_daemon`),
  as a pylxd :class:`~pylxd.Client` on the unix socket; stopped at the end only if we started it.
* ``busybox`` (session): the busybox test image built once with ``scripts/build-test-image.sh``, plus
  a newer version (one extra file, a later creation date) built with the builder API from the same
  rootfs, for the refresh tests.
* ``image_dir`` / ``image_server`` (per test): a directory backend holding the busybox image and
  ``webspaces images serve`` over it, at a unique base path on an OS-chosen port, so every test has a
  base URL LXD has never seen (its stream JSON cache is keyed by base URL and kept for an hour, §2.3).
* ``lxd_ops`` (per test): pulls, launches and refreshes through the daemon's REST API, and deletes
  every instance and image the test made, also when it fails.

A failing test gets the logs of its image servers (and of the daemon, if we started it) appended to
its report.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pluggy
import pytest

from simplestreams import builder
from tests.conftest import require
from tests.lxd import lxd_daemon

REPO = Path(__file__).resolve().parents[2]
IMAGE = "busybox"
FIRST_VERSION = "1.35.0-1"  # scripts/build-test-image.sh's IMAGE_VERSION default
NEWER_VERSION = "1.35.0-2"
NEWER_CREATED = datetime(2025, 1, 2, tzinfo=UTC)  # a day after the script's: a greater version key (§1.6)
SERVER_START = 30.0
OPERATION_TIMEOUT = 120

LOGS = pytest.StashKey[list[tuple[str, Path]]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for title, path in item.stash.get(LOGS, []):
        try:
            text = path.read_text(errors="replace")
        except OSError as exc:
            text = f"(unreadable: {exc})"
        report.sections.append((title, text[-8000:]))


def _attach_log(node: pytest.Item, title: str, path: Path) -> None:
    node.stash.setdefault(LOGS, []).append((title, path))


# -- the daemon -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def lxd_daemon_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lxd_daemon.Daemon]:
    require(shutil.which("lxd") is not None, "lxd is not installed (scripts/setup-host.sh installs it)")
    lxd_dir = Path(os.environ.get("LXD_DIR") or lxd_daemon.LXD_DIR)
    require(
        os.geteuid() == 0 or lxd_daemon.answers(lxd_dir / "unix.socket"),
        "no LXD daemon is running and starting one needs root",
    )
    daemon = lxd_daemon.ensure_running(tmp_path_factory.mktemp("lxd-daemon") / "lxd.log", lxd_dir)
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def lxd(lxd_daemon_handle: lxd_daemon.Daemon) -> Iterator[Any]:
    """A pylxd Client on the unix socket. The CA-bundle variables are unset and pylxd's warnings about
    fields it does not know are off (they would be errors under filterwarnings=error), spec §8."""
    import pylxd  # noqa: PLC0415 - only where the tier runs

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYLXD_WARNINGS", "none")
        patch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        patch.delenv("CURL_CA_BUNDLE", raising=False)
        client = pylxd.Client()
        try:
            yield client
        finally:
            client.api.session.close()


# -- the busybox image ------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Release:
    """One published busybox version: its directory ``<root>/busybox/v<version>`` and its files."""

    directory: Path
    version: str
    meta: Path
    rootfs: Path

    @property
    def fingerprint(self) -> str:
        """sha256(meta ‖ rootfs), computed here from the bytes (spec §1.5), not read from a sidecar."""
        digest = hashlib.sha256(self.meta.read_bytes())
        digest.update(self.rootfs.read_bytes())
        return digest.hexdigest()

    @property
    def assets(self) -> dict[str, Path]:
        """The files as GitHub release assets (spec §3.3): name -> path."""
        return {path.name: path for path in sorted(self.directory.iterdir()) if path.is_file()}

    def publish(self, root: Path) -> Release:
        """Copy into the directory backend ``root`` and publish by renaming a dot-directory (§6)."""
        target = root / IMAGE / f"v{self.version}"
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".staging-{uuid.uuid4().hex[:8]}"
        shutil.copytree(self.directory, staging)
        staging.rename(target)
        return Release(target, self.version, target / self.meta.name, target / self.rootfs.name)


def _release(directory: Path, version: str) -> Release:
    arch = builder.host_arch()
    return Release(
        directory, version, directory / builder.meta_name(arch), directory / builder.rootfs_name(arch)
    )


@dataclass(frozen=True)
class Busybox:
    first: Release
    newer: Release


@pytest.fixture(scope="session")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Busybox:
    """The busybox image from scripts/build-test-image.sh, and a newer version of it: the same rootfs
    (unpacked from the squashfs) plus /etc/webspaces-test-version, created a day later."""
    require(shutil.which("mksquashfs") is not None, "mksquashfs is missing (apt-get install squashfs-tools)")
    require(shutil.which("unsquashfs") is not None, "unsquashfs is missing (apt-get install squashfs-tools)")
    base = tmp_path_factory.mktemp("busybox")
    first_root = base / "first"
    result = subprocess.run(
        [str(REPO / "scripts" / "build-test-image.sh"), str(first_root)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PY": sys.executable},
    )
    if result.returncode != 0:
        pytest.fail(
            f"scripts/build-test-image.sh failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    first = _release(first_root / IMAGE / f"v{FIRST_VERSION}", FIRST_VERSION)
    assert first.meta.is_file() and first.rootfs.is_file(), sorted(p.name for p in first.directory.iterdir())

    rootfs = base / "rootfs"
    subprocess.run(
        ["unsquashfs", "-no-progress", "-quiet", "-d", str(rootfs), str(first.rootfs)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (rootfs / "etc" / "webspaces-test-version").write_text(f"{NEWER_VERSION}\n")
    built = builder.build_image(
        rootfs,
        name=IMAGE,
        into=base / "newer",
        version=NEWER_VERSION,
        os_name="busybox",
        release="1.35",
        description="busybox test image",
        templates=REPO / "images" / "busybox" / "templates",
        creation_date=NEWER_CREATED,
        expiry_days=3650,
    )
    newer = Release(built.directory, NEWER_VERSION, built.meta, built.rootfs)
    assert newer.fingerprint == built.fingerprint != first.fingerprint
    return Busybox(first, newer)


@pytest.fixture
def image_dir(tmp_path: Path, busybox: Busybox) -> Path:
    """A directory backend root holding the first busybox version."""
    root = tmp_path / "releases"
    root.mkdir()
    busybox.first.publish(root)
    return root


# -- our server -------------------------------------------------------------------------------------


@dataclass
class ImageServer:
    """One ``webspaces images serve`` process and how to reach it."""

    origin: str  # https://127.0.0.1:PORT
    base_url: str  # the remote LXD is given: origin + base path (the directory backend's or /owner/repo)
    cert_pem: str
    directory: Path | None
    process: subprocess.Popen[bytes]
    log_path: Path
    context: ssl.SSLContext = field(repr=False)

    @property
    def port(self) -> int:
        return int(self.origin.rsplit(":", 1)[1])

    def request(self, path: str, *, tls: bool = True, timeout: float = 10.0) -> tuple[int, bytes]:
        """GET ``path`` (absolute, on the server) over HTTPS with our certificate pinned, or plain."""
        connection: http.client.HTTPConnection
        if tls:
            connection = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=timeout, context=self.context
            )
        else:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def base_path(self) -> str:
        return self.base_url[len(self.origin) :]

    def images_json(self) -> dict[str, Any]:
        status, body = self.request(self.base_path() + "/streams/v1/images.json")
        assert status == 200, (status, body[:300])
        document: dict[str, Any] = json.loads(body)
        return document

    def fingerprints(self) -> set[str]:
        """Every combined_squashfs_sha256 the index currently offers."""
        found = set()
        for product in self.images_json()["products"].values():
            for version in product["versions"].values():
                for item in version["items"].values():
                    if "combined_squashfs_sha256" in item:
                        found.add(item["combined_squashfs_sha256"])
        return found

    def wait_for_fingerprint(self, fingerprint: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while fingerprint not in self.fingerprints():
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not list {fingerprint} within {timeout:.0f} s")
            time.sleep(0.1)

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (/metrics over HTTPS,
        so that reading it does not count as a plaintext connection)."""
        status, body = self.request("/metrics")
        assert status == 200, (status, body[:300])
        wanted = labels or {}
        total = 0.0
        for line in body.decode().splitlines():
            match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
            if match is None or match.group(1) != name:
                continue
            have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            if all(have.get(k) == v for k, v in wanted.items()):
                total += float(match.group(3))
        return total

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


ServerFactory = Callable[..., ImageServer]


@pytest.fixture
def start_image_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerFactory]:
    """Start ``webspaces images serve`` with extra arguments; every server is stopped (by PID) at the
    end of the test. ``base_path`` is the path LXD's remote URL gets (directory base or /owner/repo)."""
    started: list[subprocess.Popen[bytes]] = []
    handles: list[BinaryIO] = []

    def start(arguments: Sequence[str], *, base_path: str, directory: Path | None = None) -> ImageServer:
        number = len(started)
        state = tmp_path / f"server-state-{number}"
        log_path = tmp_path / f"server-{number}.log"
        handle = log_path.open("wb")
        handles.append(handle)
        _attach_log(request.node, f"image server {number} log", log_path)
        command = [
            sys.executable,
            "-m",
            "webspaces.cli",
            "images",
            "serve",
            *arguments,
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            str(state),
            "--log-level",
            "debug",
        ]
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO
        )
        started.append(process)
        deadline = time.monotonic() + SERVER_START
        port = None
        while port is None:
            match = re.search(rb"listening on 127\.0\.0\.1:(\d+)", log_path.read_bytes())
            if match:
                port = int(match.group(1))
            elif process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the image server did not start (exit {process.poll()}):\n{log_path.read_text()}"
                )
            else:
                time.sleep(0.05)
        cert_pem = (state / "tls.crt").read_text()
        context = ssl.create_default_context(cadata=cert_pem)
        origin = f"https://127.0.0.1:{port}"
        server = ImageServer(origin, origin + base_path, cert_pem, directory, process, log_path, context)
        while True:
            try:
                status, _ = server.request("/health", timeout=2)
            except (OSError, http.client.HTTPException):
                status = 0
            if status == 204:
                return server
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"/health never answered 204 (last {status}):\n{log_path.read_text()}")
            time.sleep(0.05)

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(15)
        for handle in handles:
            handle.close()


@pytest.fixture
def image_server(start_image_server: ServerFactory, image_dir: Path) -> ImageServer:
    """Our server over ``image_dir`` at a unique base path ``/t-<uuid>``, rescanning every 0.2 s."""
    base = f"/t-{uuid.uuid4().hex}"
    return start_image_server(
        ["--backend", f"directory:{image_dir}", "--base-path", base, "--scan-interval", "0.2"],
        base_path=base,
        directory=image_dir,
    )


# -- driving LXD ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How an LXD operation ended: ``error`` is LXD's own text ("" on success)."""

    ok: bool
    error: str
    metadata: Mapping[str, Any]

    @property
    def fingerprint(self) -> str:
        value = self.metadata.get("fingerprint")
        assert isinstance(value, str), f"no fingerprint in the operation metadata: {dict(self.metadata)}"
        return value


class LxdOps:
    """Image and instance operations of one test, through the REST API (pylxd's raw ``api`` node,
    since ``create_from_simplestreams`` cannot pass a certificate, spec §8); remembers what to delete."""

    def __init__(self, client: Any, daemon: lxd_daemon.Daemon) -> None:
        self.client = client
        self.daemon = daemon
        self.instances: list[str] = []
        self.fingerprints: set[str] = set()
        self.servers: list[str] = []

    def _wait(self, response: Any) -> Outcome:
        body = response.json()
        if body.get("type") != "async":
            return Outcome(True, "", body.get("metadata") or {})
        operation = body["operation"].rsplit("/", 1)[-1]
        waited = self.client.api.operations[operation].wait.get(params={"timeout": OPERATION_TIMEOUT})
        metadata = waited.json().get("metadata") or {}
        if metadata.get("status") != "Success":
            return Outcome(False, str(metadata.get("err") or metadata.get("status")), metadata)
        return Outcome(True, "", metadata.get("metadata") or {})

    def stream_cache(self, base_url: str) -> Path:
        """The daemon's JSON cache of one simplestreams remote: <cache dir>/<sha256(URL)> (§2.3)."""
        return self.daemon.cache_dir() / hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()

    def image_source(
        self, server: ImageServer, *, alias: str | None = None, fingerprint: str | None = None
    ) -> dict[str, Any]:
        if server.base_url not in self.servers:
            self.servers.append(server.base_url)
        source: dict[str, Any] = {
            "type": "image",
            "mode": "pull",
            "server": server.base_url,
            "protocol": "simplestreams",
            "certificate": server.cert_pem,
        }
        if alias is not None:
            source["alias"] = alias
        if fingerprint is not None:
            source["fingerprint"] = fingerprint
        return source

    def pull(
        self,
        server: ImageServer,
        *,
        alias: str | None = None,
        fingerprint: str | None = None,
        auto_update: bool = False,
        local_alias: str | None = None,
    ) -> Outcome:
        """POST /1.0/images with a pull source pinning our certificate; waits for the operation."""
        body: dict[str, Any] = {
            "source": self.image_source(server, alias=alias, fingerprint=fingerprint),
            "auto_update": auto_update,
        }
        if local_alias is not None:
            body["aliases"] = [{"name": local_alias}]
        outcome = self._wait(self.client.api.images.post(json=body))
        if outcome.ok:
            self.fingerprints.add(outcome.fingerprint)
        return outcome

    def image(self, fingerprint: str) -> dict[str, Any] | None:
        import pylxd.exceptions  # noqa: PLC0415

        try:
            metadata: dict[str, Any] = self.client.api.images[fingerprint].get().json()["metadata"]
        except pylxd.exceptions.NotFound:
            return None
        return metadata

    def images(self) -> list[dict[str, Any]]:
        listing: list[dict[str, Any]] = self.client.api.images.get(params={"recursion": 1}).json()["metadata"]
        return listing

    def alias_target(self, name: str) -> str | None:
        import pylxd.exceptions  # noqa: PLC0415

        try:
            target: str = self.client.api.images.aliases[name].get().json()["metadata"]["target"]
        except pylxd.exceptions.NotFound:
            return None
        return target

    def delete_image(self, fingerprint: str) -> None:
        import pylxd.exceptions  # noqa: PLC0415

        with contextlib.suppress(pylxd.exceptions.NotFound):
            self._wait(self.client.api.images[fingerprint].delete())

    def forget(self, *fingerprints: str) -> None:
        """Delete local images with these fingerprints: LXD skips the download of a fingerprint it
        holds (§2.3), and then the test would not test our server."""
        for fingerprint in fingerprints:
            self.delete_image(fingerprint)

    def refresh(self, fingerprint: str) -> Outcome:
        """POST /1.0/images/<fp>/refresh (``lxc image refresh``)."""
        return self._wait(self.client.api.images[fingerprint].refresh.post(json={}))

    def launch(self, name: str, source: Mapping[str, Any]) -> Outcome:
        """Create a container from ``source`` without any NIC (a NIC the default profile may have is
        masked with a ``none`` device), then start it."""
        self.instances.append(name)
        profile = self.client.api.profiles["default"].get().json()["metadata"]
        devices = {
            key: {"type": "none"}
            for key, device in (profile.get("devices") or {}).items()
            if device.get("type") == "nic"
        }
        body = {
            "name": name,
            "type": "container",
            "profiles": ["default"],
            "devices": devices,
            "source": dict(source),
        }
        created = self._wait(self.client.api.instances.post(json=body))
        if not created.ok:
            return created
        base = self.instance(name)["config"].get("volatile.base_image")
        if base:
            self.fingerprints.add(base)
        return self._wait(self.client.api.instances[name].state.put(json={"action": "start", "timeout": 30}))

    def instance(self, name: str) -> dict[str, Any]:
        metadata: dict[str, Any] = self.client.api.instances[name].get().json()["metadata"]
        return metadata

    def state(self, name: str) -> dict[str, Any]:
        metadata: dict[str, Any] = self.client.api.instances[name].state.get().json()["metadata"]
        return metadata

    def read_file(self, name: str, path: str) -> bytes:
        response = self.client.api.instances[name].files.get(params={"path": path}, is_api=False)
        content: bytes = response.content
        return content

    def execute(self, name: str, command: Sequence[str]) -> tuple[int, str]:
        """Run ``command`` in the container with its output recorded (no websocket), bounded."""
        outcome = self._wait(
            self.client.api.instances[name].exec.post(
                json={
                    "command": list(command),
                    "record-output": True,
                    "wait-for-websocket": False,
                    "interactive": False,
                    "environment": {},
                }
            )
        )
        assert outcome.ok, outcome.error
        stdout = ""
        log_url = outcome.metadata.get("output", {}).get("1")
        if log_url:
            log_name = log_url.rsplit("/", 1)[-1]
            stdout = self.client.api.instances[name].logs[log_name].get(is_api=False).text
            self.client.api.instances[name].logs[log_name].delete()
        return int(outcome.metadata.get("return", -1)), stdout

    def cleanup(self) -> None:
        import pylxd.exceptions  # noqa: PLC0415

        for name in self.instances:
            with contextlib.suppress(pylxd.exceptions.NotFound):
                self._wait(self.client.api.instances[name].state.put(json={"action": "stop", "force": True}))
                self._wait(self.client.api.instances[name].delete())
        ours = set(self.fingerprints)
        for image in self.images():
            source = image.get("update_source") or {}
            if any(str(source.get("server", "")).startswith(url) for url in self.servers):
                ours.add(image["fingerprint"])
        for fingerprint in sorted(ours):
            self.delete_image(fingerprint)
        for url in self.servers:
            shutil.rmtree(self.stream_cache(url), ignore_errors=True)


@pytest.fixture
def lxd_ops(
    request: pytest.FixtureRequest, lxd: Any, lxd_daemon_handle: lxd_daemon.Daemon
) -> Iterator[LxdOps]:
    if lxd_daemon_handle.started:
        _attach_log(request.node, "LXD daemon log (tail)", lxd_daemon_handle.log_path)
    ops = LxdOps(lxd, lxd_daemon_handle)
    try:
        yield ops
    finally:
        ops.cleanup()
