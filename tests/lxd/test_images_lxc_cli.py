"""The README's way in: the ``lxc`` client with a simplestreams remote and a pinned certificate.

``lxc remote add`` does not store a server certificate for simplestreams remotes; the client reads
``$LXD_CONF/servercerts/<remote>.crt`` and forwards it to the daemon as ``source.certificate``
(spec §2.5). This is what a user of a self-signed ``webspaces images serve`` does, so it is tested as
written in the README: add the remote, list it, launch from it by alias.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from simplestreams.builder import host_arch
from tests.conftest import require
from tests.lxd import lxd_daemon
from tests.lxd.conftest import IMAGE, Busybox, ImageServer, LxdOps

pytestmark = pytest.mark.lxd


def test_lxc_remote_with_pinned_certificate_lists_and_launches(
    image_server: ImageServer,
    lxd_ops: LxdOps,
    busybox: Busybox,
    lxd_daemon_handle: lxd_daemon.Daemon,
    tmp_path: Path,
) -> None:
    require(subprocess.run(["which", "lxc"], capture_output=True, check=False).returncode == 0, "no lxc")
    remote = f"ws{uuid.uuid4().hex[:8]}"
    conf = tmp_path / "lxc-conf"
    (conf / "servercerts").mkdir(parents=True)
    (conf / "servercerts" / f"{remote}.crt").write_text(image_server.cert_pem)
    environment = {**lxd_daemon_handle.environment(), "LXD_CONF": str(conf)}
    expected = busybox.first.fingerprint
    lxd_ops.forget(expected)
    lxd_ops.servers.append(image_server.base_url)  # cleanup deletes what came from it
    lxd_ops.fingerprints.add(expected)

    def lxc(*args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            ["lxc", *args], capture_output=True, text=True, env=environment, timeout=timeout, check=False
        )
        assert result.returncode == 0, f"lxc {' '.join(args)}: {result.stderr}{result.stdout}"
        return result.stdout

    lxc("remote", "add", remote, image_server.base_url, "--protocol", "simplestreams")
    listing = json.loads(lxc("image", "list", f"{remote}:", "--format", "json"))
    assert [image["fingerprint"] for image in listing] == [expected]
    aliases = {alias["name"] for alias in listing[0]["aliases"]}
    assert IMAGE in aliases and f"{IMAGE}/{host_arch()}" in aliases, aliases  # LXD adds <alias>/<arch>
    assert lxc("image", "info", f"{remote}:{IMAGE}").count(expected) == 1

    name = f"ws-cli-{uuid.uuid4().hex[:8]}"
    lxd_ops.instances.append(name)
    lxc("launch", f"{remote}:{IMAGE}", name)
    assert lxd_ops.state(name)["status"] == "Running"
    assert lxc("exec", name, "--", "/bin/busybox", "cat", "/etc/hostname").strip() == name
    assert lxd_ops.image(expected) is not None  # the daemon pulled exactly our fingerprint
