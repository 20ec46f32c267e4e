"""The ``webspaces`` command line.

Subcommands arrive with their issues (``overlay``, ``dhcp``, ``images``, ``up``/``down`` ...); each
registers itself in :data:`SUBCOMMANDS`. ``webspaces info`` reports how this installation was built.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

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


SUBCOMMANDS: list[Register] = [_register_info]


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
