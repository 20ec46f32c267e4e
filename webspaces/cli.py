"""The ``webspaces`` command line.

Subcommands arrive with their issues (``overlay``, ``dhcp``, ``images``, ``up``/``down`` ...); each
registers itself in :data:`SUBCOMMANDS`. ``webspaces info`` reports how this installation was built.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from dataplane.dhcp import config as dhcp_config
from dataplane.overlay import config as overlay_config
from dataplane.wire import implementation_report
from program.config import ConfigError
from program.runner import run_program

from . import __version__

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _info(args: argparse.Namespace) -> int:
    from dataplane.wire import _select  # noqa: PLC0415 - the twin registry, asked only here

    wire = implementation_report()
    twins = _select.report()  # every twinned module of the engine, wire's included
    if args.json:
        print(json.dumps({"version": __version__, "wire": wire, "twins": twins}, indent=2, sort_keys=True))
    else:
        print(f"webspaces {__version__}")
        width = max(map(len, twins), default=0)
        for module in _select.TWINS:
            if module in twins:
                print(f"  {module:<{width}} {twins[module]}")
    return 0


def _register_info(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "info",
        help="show the version and which packet-engine modules are compiled",
        description="Show the version and, per twinned packet-engine module (wire codecs, GSO, "
        "the VTEP, the pump, DHCP), whether the Cython build or the pure-Python twin is in use "
        "(WEBSPACES_NO_EXTENSIONS=1 forces the twins).",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=_info)


class _Configuration(Protocol):
    """A program's configuration module (``dataplane.dhcp.config`` ...): a key table on program.config."""

    def flags_from(self, args: argparse.Namespace) -> dict[str, Any]: ...

    def load(self, flags: Mapping[str, Any], *, config_file: Path | None = None) -> Any: ...


def _serve(
    args: argparse.Namespace,
    command: str,
    config: _Configuration,
    main: Callable[[Any], int],
    errors: tuple[type[Exception], ...],
    *,
    quiet: Sequence[str] = (),
) -> int:
    """A long-running subcommand: ``config``'s key table loaded from the flags, the environment and
    ``--config``, then ``main`` (see :func:`program.runner.run_program` for the exit statuses)."""
    return run_program(
        f"webspaces {command}",
        lambda: config.load(config.flags_from(args), config_file=args.config),
        (ConfigError,),
        main,
        errors,
        quiet=quiet,
    )


def _overlay(args: argparse.Namespace) -> int:
    from dataplane.overlay import agent  # noqa: PLC0415 - pulls in uvicorn/pyroute2; only when run

    return _serve(args, "overlay", overlay_config, agent.main, (agent.AgentError,))


def _register_overlay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "overlay",
        help="run the overlay agent: this node's TAP joined to the VXLAN LAN",
        description="Run the overlay node agent: a persistent TAP device bridged in userspace to "
        "a VXLAN (RFC 7348) LAN over UDP, with peers from a static list, DNS A records and/or "
        "Kubernetes EndpointSlices. Every option is also a key of the --config YAML file and an "
        "environment variable WEBSPACES_OVERLAY_<KEY> (kubelan's KL_* names are accepted too); "
        "flags win over the environment, which wins over the file. Stop with SIGTERM: the TAP, "
        "its addresses and bridge membership stay for the next start to adopt.",
        epilog="Example: webspaces overlay --local 192.0.2.1 --peer 192.0.2.2 "
        "--address 172.24.254.1/16 --vni 7331",
    )
    overlay_config.add_arguments(parser)
    parser.set_defaults(handler=_overlay)


def _dhcp(args: argparse.Namespace) -> int:
    from dataplane.dhcp import service  # noqa: PLC0415 - pulls in pyroute2/uvicorn; only when run

    # pyroute2's debug output is per netlink message
    return _serve(args, "dhcp", dhcp_config, service.main, (service.ServiceError,), quiet=("pyroute2",))


def _dhcp_leases(args: argparse.Namespace) -> int:
    from dataplane.dhcp import service  # noqa: PLC0415

    try:
        path = args.store_path or dhcp_config.load_leases_path(args.config)
    except ConfigError as exc:
        print(f"webspaces dhcp leases: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        leases = service.read_leases(path)
    except service.ServiceError as exc:
        print(f"webspaces dhcp leases: {exc}", file=sys.stderr)
        return 1
    rows = [service.lease_row(lease) for lease in leases]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    headers = ("address", "mac", "client id", "hostname", "state", "expires")
    keys = ("address", "mac", "client_id", "hostname", "state", "expires")
    table = [headers] + [
        tuple(str(row[key] if row[key] is not None else "-") for key in keys) for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return 0


def _register_dhcp(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "dhcp",
        help="run the DHCP server on an interface, or list its leases",
        description="Serve DHCPv4 (RFC 2131) on a plain Linux interface: pools with exclusions, MAC "
        "reservations, options 1, 3, 6, 15, 26, 28, 51, 54, 58, 59, relayed requests (giaddr), and "
        "leases that survive kill -9 (no ACK leaves before its lease is on disk). Every option is "
        "also a key of the --config YAML file and an environment variable WEBSPACES_DHCP_<KEY>; "
        "flags win over the environment, which wins over the file. 'webspaces dhcp leases' lists "
        "the leases of a store, also while a server is using it.",
        epilog="Example: webspaces dhcp --interface eth1 --server-address 192.0.2.1/24 "
        "--pool 192.0.2.100-192.0.2.199 --router 192.0.2.1 --dns 192.0.2.1 --leases /var/lib/ws/leases",
    )
    dhcp_config.add_arguments(parser)
    parser.set_defaults(handler=_dhcp)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    leases = commands.add_parser(
        "leases",
        help="list the leases of a lease store (read-only; safe while the server runs)",
        description="List the lease records of a store: address, MAC, client id, hostname, state "
        "and expiry. Read-only: the server may keep running and writing it.",
    )
    leases.add_argument(
        "--leases",
        dest="store_path",
        metavar="PATH",
        help="the lease store (default: WEBSPACES_DHCP_LEASES, then the leases key of "
        f"'webspaces dhcp --config FILE leases', then {dhcp_config.DEFAULT_LEASES})",
    )
    leases.add_argument("--json", action="store_true", help="print JSON instead of a table")
    leases.set_defaults(handler=_dhcp_leases)


def _images_serve(args: argparse.Namespace) -> int:
    from simplestreams import config as images_config  # noqa: PLC0415
    from simplestreams import service  # noqa: PLC0415 - pulls in uvicorn/uvloop; only when run

    # httpx logs every request at INFO, signed CDN URLs included
    errors = (service.ServiceError,)
    return _serve(args, "images serve", images_config, service.main, errors, quiet=("httpx",))


def _images_build(args: argparse.Namespace) -> int:
    from simplestreams import builder  # noqa: PLC0415

    return builder.run(args)


def _images_add(args: argparse.Namespace) -> int:
    from simplestreams import command  # noqa: PLC0415

    return command.run(args)


def _images_check(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from simplestreams.directory import DirectoryBackend  # noqa: PLC0415

    if not args.directory.is_dir():
        print(f"webspaces images check: {args.directory} is not a directory", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    catalog = asyncio.run(DirectoryBackend(args.directory).refresh())
    if args.json:
        document = json.loads(catalog.images_json)
        skipped = [{"subject": s.subject, "reason": s.reason, "detail": s.detail} for s in catalog.skipped]
        print(json.dumps({"products": document["products"], "skipped": skipped}, indent=2, sort_keys=True))
    else:
        products = json.loads(catalog.images_json)["products"]
        for product_id, product in sorted(products.items()):
            for key in sorted(product["versions"]):
                print(f"{product_id:<30} {key:<36} aliases={product.get('aliases', '')}")
        for skip in catalog.skipped:
            print(f"skipped {skip.subject}: {skip.reason} {skip.detail}".rstrip(), file=sys.stderr)
        print(f"{len(products)} products, {len(catalog.skipped)} skipped", file=sys.stderr)
    return 1 if args.strict and catalog.skipped else 0


def _register_images(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from simplestreams import builder, command  # noqa: PLC0415
    from simplestreams import config as images_config  # noqa: PLC0415

    parser = sub.add_parser(
        "images",
        help="build container images and serve them to LXD and Incus (simplestreams)",
        description="Build LXD container images into a directory of releases and serve them over the "
        "simplestreams protocol LXD and Incus pull images with, from that directory or from GitHub "
        "releases (OctoLXD's layout).",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve the simplestreams index and image files over HTTPS",
        description="Serve streams/v1/index.json, streams/v1/images.json and the image files. "
        "HTTPS with a self-signed certificate kept in --state-dir unless --tls-cert is given; a "
        "plain-HTTP request on the same port is served as plain HTTP (LXD fetches image files over "
        "plain HTTP first). Every option is also a key of the --config YAML file and an environment "
        "variable WEBSPACES_IMAGES_<KEY> (OctoLXD's octolxd.yaml keys and OCTOLXD_* variables are "
        "accepted); flags win over the environment, which wins over the file.",
        epilog="Example: webspaces images serve --backend directory:/srv/images --listen :8443, then "
        "lxc remote add ws https://HOST:8443 --protocol simplestreams (put the certificate in "
        "~/.config/lxc/servercerts/ws.crt) and lxc launch ws:busybox c1",
    )
    images_config.add_arguments(serve)
    serve.set_defaults(handler=_images_serve)
    build = commands.add_parser(
        "build",
        help="pack a root filesystem into a versioned image in a directory backend",
        description="Pack ROOTFS_DIR into a metadata tarball (metadata.yaml, templates) and an xz "
        "squashfs, with sha256 sidecars, published atomically as DIR/NAME/vVERSION/ (the layout "
        "'webspaces images serve --backend directory:DIR' serves).",
    )
    builder.add_arguments(build)
    build.set_defaults(handler=_images_build)
    add = commands.add_parser(
        "add",
        help="publish image files built elsewhere (distrobuilder, lxc image export) into a directory backend",
        description="Copy a split image's META tarball (distrobuilder's lxd.tar.xz, or the "
        "meta-<fingerprint>.tar.xz of 'lxc image export') and ROOTFS (rootfs.squashfs, "
        "<fingerprint>.squashfs or an xz rootfs tarball) into DIR/NAME/vVERSION/ with the asset "
        "names and sha256 sidecars the server expects, published atomically; the architecture comes "
        "from metadata.yaml. Unified image tarballs are refused.",
        epilog="Example: webspaces images add lxd.tar.xz rootfs.squashfs --name debian --into /srv/images",
    )
    command.add_arguments(add)
    add.set_defaults(handler=_images_add)
    check = commands.add_parser(
        "check",
        help="index a directory backend once and list what it publishes and what it skips",
        description="Index DIR the way the server does and print every product version, and every "
        "release or architecture left out with the reason (exit 1 with --strict if any).",
    )
    check.add_argument("directory", type=Path, metavar="DIR")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.add_argument("--strict", action="store_true", help="exit 1 when anything was skipped")
    check.set_defaults(handler=_images_check)


SUBCOMMANDS: list[Register] = [_register_info, _register_overlay, _register_dhcp, _register_images]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webspaces",
        description="webspaces gives every user a container on a private VXLAN LAN and an API to "
        "run it. Run 'webspaces COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"webspaces {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
