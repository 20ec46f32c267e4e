"""Errors of the image server; one root, :class:`SimplestreamsError`.

The request-facing errors carry the HTTP status the server answers with (spec §4 item 10): a missing
thing is 404, rate limiting 503 with Retry-After, an upstream failure 502; 500 is only for our bugs.
Everything that keeps one release or architecture out of the index is a :class:`RejectedError` subclass:
it becomes a :class:`~simplestreams.model.Skip`, is logged once and counted, and never fails a request.
"""

from __future__ import annotations

import program.config


class SimplestreamsError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(program.config.ConfigError, SimplestreamsError):
    """Bad configuration (a flag, a YAML key, an argument, an environment variable): the one
    :class:`program.config.ConfigError` (``key``, ``message``, ``origin``; a ValueError), also caught
    as a SimplestreamsError by the commands that answer any of ours with one message."""


class RequestError(SimplestreamsError):
    """An error a request is answered with, as application/problem+json."""

    status = 500


class NotFoundError(RequestError):
    status = 404


class UpstreamError(RequestError):
    """The upstream (GitHub) failed and no earlier index exists to serve instead."""

    status = 502


class RateLimitedError(RequestError):
    """GitHub's rate limit is exhausted and no earlier index exists to serve instead."""

    status = 503

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


class RejectedError(SimplestreamsError):
    """Input that is left out of the index; ``reason`` is the counter label."""

    reason = "rejected"


class BadTagError(RejectedError):
    reason = "bad-tag"


class UnknownArchError(RejectedError):
    reason = "unknown-arch"


class BadMetadataError(RejectedError):
    reason = "bad-metadata"


class MissingAssetError(RejectedError):
    reason = "missing-asset"


class BadSidecarError(RejectedError):
    reason = "bad-sidecar"


class HashMismatchError(RejectedError):
    reason = "hash-mismatch"


class TruncatedFileError(RejectedError):
    reason = "truncated"
