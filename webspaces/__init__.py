"""webspaces: per-user LXD containers on a private VXLAN LAN, managed through an HTTP API."""

from importlib import metadata

try:
    __version__ = metadata.version("webspaces")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
