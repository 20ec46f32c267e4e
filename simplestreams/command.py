"""The command line of ``webspaces images build`` and ``add``: arguments, progress on stderr, SIGTERM
and exit statuses; the publishing itself is :mod:`.publish` (and :mod:`.builder` for ``build``).

:func:`run_command` is what both subcommands do around their publishing function: progress on
stderr unless ``--quiet``, SIGTERM cleans up like an error (the publishing functions remove what
they made on any exception), 0 with the paths and the fingerprint on stdout, 1 with one message.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from .errors import SimplestreamsError
from .progress import Progress, progress_for
from .publish import FIRST_VERSION, BuiltImage, add_image


def run_command(command: str, publish: Callable[[Progress | None], BuiltImage], *, quiet: bool) -> int:
    """What ``webspaces images build`` and ``add`` share: progress on stderr unless ``quiet``, 0 when
    published (or already published with the same bytes) with the paths and the fingerprint on stdout,
    1 on an error with one message on stderr; SIGTERM cleans up like an error."""
    progress = progress_for(sys.stderr, quiet=quiet)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        built = publish(progress)
    except (SimplestreamsError, OSError) as exc:
        print(f"webspaces images {command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"webspaces images {command}: interrupted; nothing was published", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if built.unchanged:
        print(f"{built.name} v{built.version} {built.arch} is already published with identical content")
    else:
        print(f"published {built.name} v{built.version} {built.arch} ({built.size} bytes)")
    for path in built.files:
        print(f"  {path}")
    print(f"fingerprint {built.fingerprint}")
    return 0


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``webspaces images add``."""
    parser.add_argument(
        "meta",
        type=Path,
        metavar="META",
        help="the meta tarball: distrobuilder's lxd.tar.xz, or meta-<fingerprint>.tar.xz of lxc image export",
    )
    parser.add_argument(
        "rootfs",
        type=Path,
        metavar="ROOTFS",
        help="the rootfs: rootfs.squashfs (or <fingerprint>.squashfs), or an xz rootfs tarball",
    )
    parser.add_argument(
        "--name", required=True, help="image name (the alias; may contain '/'), as in a tag <name>/v<semver>"
    )
    parser.add_argument(
        "--into",
        required=True,
        type=Path,
        metavar="DIR",
        help="root of the directory backend to publish into",
    )
    parser.add_argument(
        "--version",
        help="strict semver; default: the highest published version with its patch bumped, else "
        f"{FIRST_VERSION}",
    )
    parser.add_argument(
        "--arch",
        help="architecture name in the file names (default: metadata.yaml's, by its Debian name, e.g. "
        "x86_64 -> amd64); it must agree with metadata.yaml",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    """``webspaces images add``; see :func:`run_command` for the exit status and output."""
    return run_command(
        "add",
        lambda progress: add_image(
            args.meta,
            args.rootfs,
            name=args.name,
            into=args.into,
            version=args.version,
            arch=args.arch,
            progress=progress,
        ),
        quiet=args.quiet,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m simplestreams.command``), the same as ``images add``."""
    return standalone(
        "webspaces images add",
        "Publish a split LXD image built elsewhere (META ROOTFS) into a directory backend as "
        "DIR/NAME/v<version>/.",
        add_arguments,
        run,
        argv,
    )


def standalone(
    prog: str,
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None,
) -> int:
    """A subcommand run on its own (``python -m``): its arguments parsed from ``argv``, then ``run``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
