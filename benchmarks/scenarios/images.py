"""``images``: images.json requests/s, our simplestreams server vs nginx; the 1,000-version index build.

**Requests per second** (issue 5, "Benchmark"). Our server runs as a user runs it, a child process:
``python -m webspaces images serve --backend directory:CORPUS --listen 127.0.0.1:PORT --state-dir
STATE --log-level warning``, HTTPS with the self-signed certificate it writes to ``STATE/tls.crt``, and
plain HTTP answered on the same port (spec/simplestreams.md §2.2). The corpus is a directory of real
releases (meta tarballs and fake squashfs files from :mod:`simplestreams.synthetic`,
:attr:`Plan.names` images x :attr:`Plan.versions` versions x 2 architectures). Once ``/health``
answers 204, images.json is fetched from ours and those exact bytes are written to nginx's root, so
both serve the identical file. nginx (Debian's nginx-light) runs in the foreground as our child from a
config of our own: ``worker_processes 1`` (one serving process each, as ours is one process),
``access_log off``, ``sendfile on`` with nginx's default ``tcp_nopush off`` (Debian's stock
nginx.conf turns it on, which on loopback cut nginx's plain-HTTP rate from ~60k to ~35k requests/s in
an A/B run here; ``open_file_cache`` made no measurable difference and is left off), a plain listener
and an ``ssl`` listener using *our* certificate and key with TLS 1.3 enabled (nginx 1.22 leaves it
off; Python's ssl and LXD's Go client use it), so both negotiate the same protocol and cipher
(recorded in ``notes``), and ``keepalive_requests`` raised so that, like ours, it never closes a busy
keep-alive connection (nginx's default of 1,000 would make wrk reconnect, which over TLS means a new
handshake every 1,000 requests).

Load: ``wrk -t1 -c32 -dSECONDS --latency URL``, over HTTPS and over plain HTTP, against each server.
On a machine with two CPUs or more wrk is pinned to CPU 0 and each server (all its processes and
threads) to CPU 1 with ``taskset``, the same for both servers, so the load generator never steals the
server's core. Each server gets a short unmeasured warm-up per protocol; then :attr:`Plan.rounds`
rounds alternate the order (ours first, then nginx first, ...) and the median over rounds is
reported. wrk's "Non-2xx or 3xx responses" must be absent, a sample response body fetched from each
server over each protocol must equal the file byte for byte, and wrk's bytes read per request must
cover the file (a truncated or compressed body cannot pass: wrk asks for no gzip). The CPU time each
server spent during each run (``/proc``) gives **requests per server CPU-second**, reported beside
requests/s with its own ratios (``per_cpu_vs_nginx``, ``per_cpu_vs_nginx_http``): on a shared machine
other load moves requests/s far more than it moves the cost of a request. wrk's own CPU time and each
core's busy fraction go into ``notes`` (was wrk the bottleneck; what else ran on the cores).

**Index build**: :attr:`Plan.index_versions` versions x 2 architectures (amd64, arm64) of one image,
tiny files (fake squashfs superblocks), built in this process with
``DirectoryBackend(root, cache=HashCache(path))``. Cold: the first ``refresh()`` hashes and parses
everything; the cache is then saved. Warm, restart: a *new* backend with a *new* HashCache loaded from
that file, ``refresh()`` (scan + stat + cached hashes + catalog render): the median of
:attr:`Plan.warm_builds`, timed from loading the cache file to the rendered catalog. Warm, same
instance: ``refresh()`` again on the backend just built. ``index_1000_s`` is the warm restart figure
(what restarting the server costs); every warm catalog must hold 2 products x 1,000 versions and no
skip, so a broken build cannot report a fast time.

Everything listens on 127.0.0.1 on ports the OS picked; temporary directories are removed and the
servers are stopped by PID on any exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import resource
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from simplestreams.directory import DirectoryBackend
from simplestreams.hashcache import HashCache
from simplestreams.synthetic import write_release
from webspaces.lab.netns import stop_process, wait_for

from ..harness import Options, Report, Result, Scenario, ScenarioUnavailableError, register

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
IMAGES_PATH = "/streams/v1/images.json"
ARCHS = ("amd64", "arm64")
WRK_CPU, SERVER_CPU = 0, 1  # pinned apart (see `pin`)
IMPLS = ("ours", "nginx")
SCHEMES = ("https", "http")
START_TIMEOUT = 120.0  # our first build hashes the whole corpus before /health says 204


@dataclass(frozen=True, slots=True)
class Plan:
    wrk_seconds: int
    rounds: int
    warmup_seconds: int
    connections: int
    names: int  # the rps corpus: images x versions x ARCHS
    versions: int
    index_versions: int  # the index build: one image, this many versions x ARCHS
    warm_builds: int
    download_mib: int  # one rootfs of this size, downloaded whole by curl from both servers


FULL = Plan(
    wrk_seconds=10,
    rounds=3,
    warmup_seconds=2,
    connections=32,
    names=5,
    versions=20,
    index_versions=1000,
    warm_builds=5,
    download_mib=256,
)
QUICK = Plan(
    wrk_seconds=3,
    rounds=1,
    warmup_seconds=1,
    connections=32,
    names=5,
    versions=20,
    index_versions=1000,
    warm_builds=5,
    download_mib=16,
)


class BenchError(RuntimeError):
    """A server did not start, a response was wrong, or wrk failed: the run is void."""


# -- wrk -------------------------------------------------------------------------------------------------

_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_PERCENTILE = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_TOTALS = re.compile(
    r"^\s+(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+)(B|KB|MB|GB|TB) read", re.MULTILINE
)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


@dataclass(frozen=True, slots=True)
class WrkRun:
    """One wrk run: the figures it printed, plus the CPU the server and wrk spent during it."""

    impl: str
    scheme: str
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    seconds: float
    bytes_read: float
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx: int = 0
    server_cpu_s: float = 0.0
    wrk_cpu_s: float = 0.0
    cpu_busy: dict[str, float] = field(default_factory=dict)  # per CPU, all processes, softirq included

    @property
    def per_server_cpu_s(self) -> float:
        """Requests per CPU-second of the server: less sensitive to other load than ``rps``."""
        return self.requests / self.server_cpu_s if self.server_cpu_s > 0 else 0.0

    def view(self) -> dict[str, Any]:
        measured = asdict(self)
        measured["bytes_per_response"] = round(self.bytes_read / self.requests) if self.requests else 0
        measured["server_cpu_share"] = round(self.server_cpu_s / self.seconds, 3) if self.seconds else 0.0
        measured["wrk_cpu_share"] = round(self.wrk_cpu_s / self.seconds, 3) if self.seconds else 0.0
        measured["requests_per_server_cpu_s"] = round(self.per_server_cpu_s)
        return measured


def parse_wrk(output: str) -> dict[str, Any]:
    """The figures of ``wrk --latency`` output: rps, latency percentiles in ms, totals, errors.

    Raises :class:`BenchError` when a figure is missing (wrk failed, or its format changed)."""
    rps = _RPS.search(output)
    totals = _TOTALS.search(output)
    percentiles = {int(p): float(v) * _TIME_UNITS[u] for p, v, u in _PERCENTILE.findall(output)}
    if rps is None or totals is None or set(percentiles) != {50, 75, 90, 99}:
        raise BenchError(f"wrk printed no complete report:\n{output[-2000:]}")
    errors = _SOCKET_ERRORS.search(output)
    non_2xx = _NON_2XX.search(output)
    return {
        "rps": float(rps.group(1)),
        "p50_ms": percentiles[50],
        "p75_ms": percentiles[75],
        "p90_ms": percentiles[90],
        "p99_ms": percentiles[99],
        "requests": int(totals.group(1)),
        "seconds": float(totals.group(2)) * _TIME_UNITS[totals.group(3)] / 1000,
        "bytes_read": float(totals.group(4)) * _SIZE_UNITS[totals.group(5)],
        "socket_errors": (
            dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True))
            if errors is not None
            else {}
        ),
        "non_2xx": int(non_2xx.group(1)) if non_2xx is not None else 0,
    }


def pin(cpu: int) -> list[str]:
    """``taskset -c CPU`` on a machine with two CPUs or more (else nothing)."""
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpu)]


def cpu_times() -> dict[str, tuple[int, int]]:
    """Per CPU, (busy, total) jiffies from /proc/stat; busy is everything but idle and iowait. Beside
    the server's and wrk's own CPU time it shows what else ran on their cores (other load, softirq)."""
    times: dict[str, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            numbers = [int(value) for value in values[:8]]
            times[name] = (sum(numbers) - numbers[3] - numbers[4], sum(numbers))
    return times


def busy_fractions(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, float]:
    fractions = {}
    for name, (busy, total) in after.items():
        busy_before, total_before = before.get(name, (0, 0))
        span = total - total_before
        fractions[name] = round((busy - busy_before) / span, 3) if span > 0 else 0.0
    return fractions


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- processes -------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), in seconds; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (nginx's workers), from /proc."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 the OS just handed out (bind to 0), free again for the server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


_INSECURE = ssl.create_default_context()
_INSECURE.check_hostname = False
_INSECURE.verify_mode = ssl.CERT_NONE  # both servers use our own self-signed certificate on loopback


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of one GET (0 and b"" when nothing answered)."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=_INSECURE) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code), b""
    except (OSError, ValueError):
        return 0, b""


def _start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        return f"\n--- {log.name}:\n{log.read_text(errors='replace')[-3000:]}"
    return ""


def _wait_up(process: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float) -> bool:
    """Poll ``ready`` until it holds (True), the process exits or ``timeout`` seconds pass (False)."""
    return wait_for(lambda: process.poll() is not None or ready(), timeout, interval=0.1) and (
        process.poll() is None
    )


def _why_down(process: subprocess.Popen[bytes], timeout: float) -> str:
    code = process.poll()
    return f"exited with status {code}" if code is not None else f"was not ready after {timeout:.0f} s"


@dataclass
class Server:
    impl: str
    process: subprocess.Popen[bytes]
    urls: dict[str, str]  # scheme -> images.json URL
    log: Path

    def pids(self) -> list[int]:
        """Every process serving requests: ours is one process; nginx is a master and its worker."""
        return [self.process.pid, *child_pids(self.process.pid)]


def ours_env() -> dict[str, str]:
    """This environment without WEBSPACES_IMAGES_* / OCTOLXD_* settings (they would change the config)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBSPACES_", "OCTOLXD_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def ours_argv(corpus: Path, port: int, state: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "webspaces",
        "images",
        "serve",
        "--backend",
        f"directory:{corpus}",
        "--listen",
        f"{HOST}:{port}",
        "--state-dir",
        str(state),
        "--log-level",
        "warning",
    ]


@contextlib.contextmanager
def serve_ours(corpus: Path, workdir: Path) -> Iterator[Server]:
    port = free_port()
    log = workdir / "ours.log"
    process = _start([*pin(SERVER_CPU), *ours_argv(corpus, port, workdir / "state")], log, ours_env())
    try:
        base = f"{HOST}:{port}"
        if not _wait_up(process, lambda: http_get(f"http://{base}/health", 2)[0] == 204, START_TIMEOUT):
            raise BenchError(
                f"our server {_why_down(process, START_TIMEOUT)}: no 204 from /health{_tail(log)}"
            )
        yield Server("ours", process, {s: f"{s}://{base}{IMAGES_PATH}" for s in SCHEMES}, log)
    finally:
        stop_process(process)


def nginx_config(prefix: Path, docroot: Path, ports: dict[str, int], cert: Path, key: Path) -> str:
    """One worker, no access log, every path inside ``prefix``, the file served from ``docroot``."""
    temp = {name: prefix / f"{name}_temp" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    return "\n".join(
        [
            "worker_processes 1;",
            f"pid {prefix / 'nginx.pid'};",
            f"error_log {prefix / 'error.log'} warn;",
            "events { worker_connections 1024; }",
            "http {",
            "    access_log off;",
            "    types { application/json json; }",
            "    default_type application/octet-stream;",
            "    sendfile on;",
            "    keepalive_requests 100000000;",
            "    keepalive_timeout 75s;",
            *(f"    {name}_temp_path {path};" for name, path in temp.items()),
            "    server {",
            f"        listen {HOST}:{ports['http']};",
            f"        listen {HOST}:{ports['https']} ssl;",
            f"        ssl_certificate {cert};",
            f"        ssl_certificate_key {key};",
            # nginx 1.22 leaves TLS 1.3 off by default; ours (Python's ssl) offers it, and so does LXD.
            "        ssl_protocols TLSv1.2 TLSv1.3;",
            f"        root {docroot};",
            "    }",
            "}",
            "",
        ]
    )


@contextlib.contextmanager
def serve_nginx(
    document: bytes, cert: Path, key: Path, workdir: Path, extra: dict[str, Path] | None = None
) -> Iterator[Server]:
    """nginx serving ``document`` at IMAGES_PATH and each ``extra`` file (hard-linked: the same bytes)
    at its URL path."""
    prefix = workdir / "nginx"
    docroot = prefix / "root"
    target = docroot / IMAGES_PATH.lstrip("/")
    target.parent.mkdir(parents=True)
    target.write_bytes(document)
    placed = [target]
    for url_path, source in (extra or {}).items():
        linked = docroot / url_path.lstrip("/")
        linked.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, linked)
        placed.append(linked)
    # nginx started as root serves as "nobody": every directory on the way must be searchable.
    for path in placed:
        for directory in path.relative_to(workdir).parents:
            (workdir / directory).chmod(0o755)
        path.chmod(0o644)
    ports = {"http": free_port(), "https": free_port()}
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_config(prefix, docroot, ports, cert, key))
    log = prefix / "stderr.log"
    argv = ["nginx", "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log"), "-g", "daemon off;"]
    process = _start([*pin(SERVER_CPU), *argv], log)
    try:
        urls = {s: f"{s}://{HOST}:{ports[s]}{IMAGES_PATH}" for s in SCHEMES}
        if not _wait_up(process, lambda: all(http_get(url, 2)[0] == 200 for url in urls.values()), 30):
            why = _why_down(process, 30)
            raise BenchError(
                f"nginx {why}: no 200 for {IMAGES_PATH}{_tail(log)}{_tail(prefix / 'error.log')}"
            )
        yield Server("nginx", process, urls, log)
    finally:
        stop_process(process)


def tls_parameters(url: str) -> str:
    """The protocol and cipher a default client negotiates with the server at ``url`` (a fairness check:
    both servers must end up doing the same cryptography)."""
    host, _, port = url.split("/")[2].partition(":")
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        _INSECURE.wrap_socket(raw, server_hostname=host) as tls,
    ):
        cipher = tls.cipher()
        return f"{tls.version()} {cipher[0] if cipher else '?'}"


def check_bodies(server: Server, document: bytes) -> None:
    for scheme, url in server.urls.items():
        status, body = http_get(url)
        if status != 200 or body != document:
            raise BenchError(
                f"{server.impl} {scheme}: GET {url} gave {status}, {len(body)} bytes, "
                f"not the {len(document)}-byte images.json"
            )


# -- requests per second ---------------------------------------------------------------------------------


def run_wrk(server: Server, scheme: str, seconds: int, connections: int) -> WrkRun:
    """One bounded wrk run against ``server`` over ``scheme``; its CPU is read from /proc around it."""
    impl, server_pids = server.impl, server.pids()
    argv = [*pin(WRK_CPU), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    argv += ["--latency", server.urls[scheme]]
    server_before = sum(cpu_seconds(pid) for pid in server_pids)
    wrk_before = _children_cpu()
    cores_before = cpu_times()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    cores = busy_fractions(cores_before, cpu_times())
    wrk_cpu = _children_cpu() - wrk_before
    server_cpu = sum(cpu_seconds(pid) for pid in server_pids) - server_before
    if result.returncode != 0:
        raise BenchError(f"{impl} {scheme}: wrk failed ({result.returncode}): {result.stderr.strip()}")
    parsed = parse_wrk(result.stdout)
    if parsed["requests"] == 0:
        raise BenchError(f"{impl} {scheme}: wrk completed no request:\n{result.stdout}")
    if parsed["non_2xx"]:
        raise BenchError(f"{impl} {scheme}: {parsed['non_2xx']} responses were not 2xx/3xx")
    return WrkRun(
        impl, scheme, server_cpu_s=round(server_cpu, 3), wrk_cpu_s=round(wrk_cpu, 3), cpu_busy=cores, **parsed
    )


DOWNLOAD_PATH = "/images/download/amd64/v1.0.0/rootfs.squashfs"


def curl_download(url: str, size: int, cafile: Path) -> float:
    """Bytes per second of one whole download by curl (pinned beside wrk's CPU), checked for size."""
    argv = [*pin(WRK_CPU), "curl", "-s", "-o", "/dev/null", "--cacert", str(cafile), "--max-time", "120"]
    argv += ["-w", "%{http_code} %{size_download} %{speed_download}", url]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    fields = result.stdout.split()
    if result.returncode != 0 or len(fields) != 3 or fields[0] != "200" or int(fields[1]) != size:
        raise BenchError(f"download of {url}: curl {result.returncode} {result.stdout!r} {result.stderr!r}")
    return float(fields[2])


def measure_downloads(
    servers: dict[str, Server], size: int, cafile: Path, rounds: int
) -> list[dict[str, Any]]:
    """Each server's rootfs download rate per scheme, ``rounds`` times in alternating order."""
    measured: list[dict[str, Any]] = []
    for round_number in range(rounds):
        order = IMPLS if round_number % 2 == 0 else IMPLS[::-1]
        for scheme in SCHEMES:
            for impl in order:
                base = servers[impl].urls[scheme].removesuffix(IMAGES_PATH)
                rate = curl_download(base + DOWNLOAD_PATH, size, cafile)
                measured.append({"impl": impl, "scheme": scheme, "bytes_per_s": rate})
    return measured


def write_corpus(root: Path, plan: Plan) -> int:
    """``plan.names`` images x ``plan.versions`` versions x ARCHS as release directories; file count."""
    for n in range(plan.names):
        for v in range(plan.versions):
            write_release(root, f"bench{n}", f"1.{v}.0", ARCHS)
    return sum(1 for path in root.rglob("*") if path.is_file())


def measure_rps(plan: Plan) -> dict[str, Any]:
    """Both servers up side by side; warm-up, then ``plan.rounds`` rounds in alternating order."""
    with tempfile.TemporaryDirectory(prefix="wsbench-images-") as temporary:
        workdir = Path(temporary)
        corpus = workdir / "corpus"
        files = write_corpus(corpus, plan)
        download_size = plan.download_mib << 20
        big = write_release(corpus, "download", "1.0.0", ["amd64"], rootfs_size=download_size)
        big_file = big.directory / "rootfs.amd64.squashfs"
        with serve_ours(corpus, workdir) as ours:
            status, document = http_get(ours.urls["https"], timeout=30)
            if status != 200 or not document:
                raise BenchError(f"our server gave {status} for {IMAGES_PATH}{_tail(ours.log)}")
            products = json.loads(document)["products"]
            state = workdir / "state"
            extra = {DOWNLOAD_PATH: big_file}
            with serve_nginx(document, state / "tls.crt", state / "tls.key", workdir, extra) as nginx:
                servers = {"ours": ours, "nginx": nginx}
                for server in servers.values():
                    check_bodies(server, document)
                tls = {impl: tls_parameters(server.urls["https"]) for impl, server in servers.items()}
                for server in servers.values():
                    for scheme in SCHEMES:
                        run_wrk(server, scheme, plan.warmup_seconds, plan.connections)
                runs: list[WrkRun] = []
                for round_number in range(plan.rounds):
                    order = IMPLS if round_number % 2 == 0 else IMPLS[::-1]
                    for scheme in SCHEMES:
                        for impl in order:
                            server = servers[impl]
                            runs.append(run_wrk(server, scheme, plan.wrk_seconds, plan.connections))
                for server in servers.values():
                    check_bodies(server, document)  # still the same file after the load
                downloads = measure_downloads(servers, download_size, state / "tls.crt", plan.rounds)
                nginx_conf = (workdir / "nginx" / "nginx.conf").read_text()
        for run in runs:
            if run.bytes_read < 0.98 * len(document) * run.requests:
                raise BenchError(
                    f"{run.impl} {run.scheme}: {run.bytes_read / run.requests:.0f} bytes read per response, "
                    f"less than the {len(document)}-byte file"
                )
    return {
        "runs": runs,
        "downloads": downloads,
        "download_bytes": download_size,
        "document_bytes": len(document),
        "document_sha256": hashlib.sha256(document).hexdigest(),
        "corpus": {
            "images": plan.names,
            "versions": plan.versions,
            "archs": list(ARCHS),
            "files": files,
            "products": len(products),
        },
        "nginx_conf": nginx_conf,
        "tls": tls,
    }


# -- the index build ------------------------------------------------------------------------------------


def _versions_per_product(images_json: bytes) -> dict[str, int]:
    document = json.loads(images_json)
    return {product: len(entry["versions"]) for product, entry in document["products"].items()}


async def _warm_restart(root: Path, cache_path: Path) -> tuple[float, float, float, dict[str, int], int]:
    """A new HashCache from the file and a new backend: load + first refresh, then a second refresh."""
    began = time.perf_counter()
    cache = HashCache(cache_path)
    loaded = time.perf_counter()
    backend = DirectoryBackend(root, cache=cache)
    catalog = await backend.refresh()
    built = time.perf_counter()
    again = await backend.refresh()
    rebuilt = time.perf_counter()
    if again.images_json != catalog.images_json:
        raise BenchError("two warm builds of the same directory rendered different images.json")
    if cache.misses:
        raise BenchError(f"the warm build missed the hash cache {cache.misses} times")
    skipped = len(catalog.skipped)
    return loaded - began, built - began, rebuilt - built, _versions_per_product(catalog.images_json), skipped


def measure_index(plan: Plan) -> dict[str, Any]:
    """Cold build, then ``plan.warm_builds`` warm builds by fresh backends from the saved cache."""
    with tempfile.TemporaryDirectory(prefix="wsbench-index-") as temporary:
        workdir = Path(temporary)
        root = workdir / "releases"
        began = time.perf_counter()
        for k in range(plan.index_versions):
            write_release(root, "bench", f"1.{k}.0", ARCHS)
        written = time.perf_counter() - began
        cache_path = workdir / "hashes.json"

        async def cold() -> tuple[float, dict[str, int], int]:
            cache = HashCache(cache_path)
            backend = DirectoryBackend(root, cache=cache)
            started = time.perf_counter()
            catalog = await backend.refresh()
            elapsed = time.perf_counter() - started
            cache.save()
            return elapsed, _versions_per_product(catalog.images_json), len(catalog.images_json)

        cold_s, cold_versions, images_bytes = asyncio.run(cold())
        # One product per architecture, ID "<name>:<arch>" (spec §3.4), each with every version.
        expected = [plan.index_versions] * len(ARCHS)
        if sorted(cold_versions.values()) != expected:
            raise BenchError(f"the cold build has {cold_versions}, not {len(ARCHS)} x {plan.index_versions}")
        warm: list[tuple[float, float, float]] = []
        for _ in range(plan.warm_builds):
            load_s, build_s, rebuild_s, versions, skipped = asyncio.run(_warm_restart(root, cache_path))
            if versions != cold_versions or skipped:
                raise BenchError(f"a warm build has {versions} and {skipped} skips, not {cold_versions}")
            warm.append((load_s, build_s, rebuild_s))
        cache_bytes = cache_path.stat().st_size
    return {
        "versions": plan.index_versions,
        "archs": list(ARCHS),
        "products": cold_versions,
        "images_json_bytes": images_bytes,
        "hash_cache_bytes": cache_bytes,
        "write_corpus_s": round(written, 3),
        "cold_s": round(cold_s, 4),
        "warm_restart_s": [round(w[1], 4) for w in warm],
        "warm_restart_cache_load_s": [round(w[0], 4) for w in warm],
        "warm_same_instance_s": [round(w[2], 4) for w in warm],
    }


# -- the scenario ---------------------------------------------------------------------------------------


def check_prerequisites() -> None:
    """Raise ScenarioUnavailableError naming what is missing: wrk, nginx, curl, ``images serve``."""
    for tool, package in (("wrk", "wrk"), ("nginx", "nginx-light"), ("curl", "curl")):
        if shutil.which(tool) is None:
            raise ScenarioUnavailableError(f"needs {tool} on PATH (Debian package {package})")
    result = subprocess.run(
        [sys.executable, "-m", "webspaces", "images", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=ours_env(),
        cwd=ROOT,
    )
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise ScenarioUnavailableError(
            f"`webspaces images serve --help` failed: {lines[-1] if lines else result.returncode}"
        )


def _version(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def run(options: Options) -> Report:
    check_prerequisites()
    plan = QUICK if options.quick else FULL
    started = time.monotonic()
    load_before = os.getloadavg()
    rps = measure_rps(plan)
    index = measure_index(plan)
    runs: list[WrkRun] = rps["runs"]

    def median(impl: str, scheme: str, key: str) -> float:
        return float(statistics.median(getattr(r, key) for r in runs if (r.impl, r.scheme) == (impl, scheme)))

    def ratio(scheme: str, key: str) -> float:
        return round(median("ours", scheme, key) / median("nginx", scheme, key), 3)

    results: list[Result] = []
    for scheme in SCHEMES:
        for impl in IMPLS:
            results.append(
                Result(f"images.json {scheme}", impl, round(median(impl, scheme, "rps")), "requests/s")
            )
    for scheme in SCHEMES:
        for impl in IMPLS:
            per_cpu = round(median(impl, scheme, "per_server_cpu_s"))
            results.append(Result(f"images.json {scheme} per server CPU-s", impl, per_cpu, "requests/CPU-s"))
    for scheme in SCHEMES:
        for quantile in ("p50", "p99"):
            for impl in IMPLS:
                value = round(median(impl, scheme, f"{quantile}_ms"), 3)
                results.append(Result(f"{scheme} latency {quantile}", impl, value, "ms"))
    downloads: list[dict[str, Any]] = rps["downloads"]

    def download_rate(impl: str, scheme: str) -> float:
        rates = [d["bytes_per_s"] for d in downloads if (d["impl"], d["scheme"]) == (impl, scheme)]
        return float(statistics.median(rates))

    for scheme in SCHEMES:
        for impl in IMPLS:
            mb_per_s = round(download_rate(impl, scheme) / 1e6)
            results.append(
                Result(f"rootfs download {plan.download_mib} MiB {scheme}", impl, mb_per_s, "MB/s")
            )
    label = f"index {plan.index_versions:,} versions x {len(ARCHS)} archs"
    warm_restart = statistics.median(index["warm_restart_s"])
    warm_same = statistics.median(index["warm_same_instance_s"])
    results.append(Result(f"{label}, cold (hash all)", "ours", index["cold_s"], "s"))
    results.append(Result(f"{label}, warm, new backend", "ours", round(warm_restart, 4), "s"))
    results.append(Result(f"{label}, warm, same backend", "ours", round(warm_same, 4), "s"))

    ratios = {
        "rps_vs_nginx": ratio("https", "rps"),
        "rps_vs_nginx_http": ratio("http", "rps"),
        "index_1000_s": round(warm_restart, 4),
        "per_cpu_vs_nginx": ratio("https", "per_server_cpu_s"),
        "per_cpu_vs_nginx_http": ratio("http", "per_server_cpu_s"),
        "download_vs_nginx_http": round(download_rate("ours", "http") / download_rate("nginx", "http"), 3),
        "download_vs_nginx": round(download_rate("ours", "https") / download_rate("nginx", "https"), 3),
    }
    pinned = pin(SERVER_CPU)
    return Report(
        results=results,
        ratios=ratios,
        notes={
            "plan": asdict(plan),
            "load": (
                f"wrk -t1 -c{plan.connections} -d{plan.wrk_seconds}s --latency, median of {plan.rounds} "
                f"round(s), order alternating ours/nginx; {plan.warmup_seconds} s warm-up per server and "
                "protocol"
            ),
            "pinning": (
                f"wrk on CPU {WRK_CPU}, each server (all processes and threads) on CPU {SERVER_CPU} (taskset)"
                if pinned
                else "none (fewer than 2 CPUs or no taskset)"
            ),
            "processes": "one serving process each: ours (one Python process), nginx worker_processes 1 "
            "(plus its idle master)",
            "tls": {
                "key": "both use the self-signed certificate and key ours made (STATE/tls.crt, tls.key)",
                "negotiated": rps["tls"],
            },
            "download": (
                f"one {plan.download_mib} MiB rootfs (a fake squashfs; nginx serves a hard link of the same "
                "file) fetched whole by curl per server and scheme, median of the rounds; "
                "download_vs_nginx_http is the plain-HTTP probe LXD's daemon downloads with first"
            ),
            "body": "identical bytes from both (checked before and after the load); no gzip requested",
            "rps_vs_nginx": "ours / nginx over HTTPS (what LXD uses); rps_vs_nginx_http over plain HTTP",
            "per_cpu_vs_nginx": "the same for requests per CPU-second of the server process(es), which "
            "other load on the machine skews less than requests/s",
            "index_1000_s": (
                "median of the warm builds by a NEW DirectoryBackend with a NEW HashCache loaded from the "
                "saved file (what a restart costs), timed from loading the cache file to the rendered catalog"
            ),
            "corpus": {**rps["corpus"], "images_json_bytes": rps["document_bytes"]},
            "images_json_sha256": rps["document_sha256"],
            "versions": {"nginx": _version(["nginx", "-v"]), "wrk": _version(["wrk", "--version"])},
            "nginx_conf": rps["nginx_conf"],
            "runs": [run.view() for run in runs],
            "index": index,
            "seconds": round(time.monotonic() - started, 1),
            "loadavg_1_5_15": {"before": load_before, "after": os.getloadavg()},
        },
    )


register(
    Scenario(
        name="images",
        description="images.json requests/s: our server vs nginx (HTTPS, HTTP); 1,000x2 index build time",
        run=run,
    )
)
