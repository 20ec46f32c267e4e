"""The ``webspaces`` command line.

Subcommands arrive with their issues (``overlay``, ``dhcp``, ``images``, ``up``/``down`` ...); each
registers itself in :data:`SUBCOMMANDS`. ``webspaces info`` reports how this installation was built.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from dataplane.overlay import config as overlay_config
from dataplane.wire import implementation_report

from . import __version__

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _info(args: argparse.Namespace) -> int:
    wire = implementation_report()
    if args.json:
        print(json.dumps({"version": __version__, "wire": wire}, indent=2, sort_keys=True))
    else:
        print(f"webspaces {__version__}")
        for module, impl in sorted(wire.items()):
            print(f"  dataplane.wire.{module:<10} {impl}")
    return 0


def _register_info(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "info",
        help="show the version and which packet-engine modules are compiled",
        description="Show the version and, per wire module, whether the Cython build or the "
        "pure-Python twin is in use (WEBSPACES_NO_EXTENSIONS=1 forces the twins).",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=_info)


def _overlay(args: argparse.Namespace) -> int:
    from dataplane.overlay import agent  # noqa: PLC0415 - pulls in uvicorn/pyroute2; only when run

    flags = {key: getattr(args, key, None) for key in overlay_config.KEYS}
    try:
        config = overlay_config.load(flags, config_file=args.config)
    except overlay_config.ConfigError as exc:
        print(f"webspaces overlay: bad configuration: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return agent.main(config)
    except agent.AgentError as exc:
        print(f"webspaces overlay: {exc}", file=sys.stderr)
        return 1


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


SUBCOMMANDS: list[Register] = [_register_info, _register_overlay]


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
