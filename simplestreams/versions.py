"""Release tags, semantic versions and version keys (spec/simplestreams.md §1.6, §3.3).

A release tag is ``<name>/v<semver>`` (OctoLXD's ``^(\\S+)/v(.+)$`` with strict Semantic Versioning
2.0.0 for group 2). Publishers write ``docker/v20.10.8-1``: the ``-1`` is a packaging revision that
semver parses as a prerelease field, so it is valid and never means "unstable" (spec §4 item 13).
``wordpress/v5.7-1`` has no patch number and is rejected. Group 1 is greedy, so ``a/b/v1.0.0`` names
the image ``a/b``; the name becomes a URL and a directory path, so its segments are checked too.

The version key replaces OctoLXD's local-time ``YYYYMMDD_v<semver>`` (spec §4 item 6): LXD orders
versions by the key as a string, so a UTC ``YYYYMMDD_hhmm`` prefix makes "newest" mean "latest build",
keeps v1.10.0 above a same-day v1.9.0 and does not depend on the server's time zone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from .errors import BadTagError

_TAG = re.compile(r"(\S+)/v(.+)", re.DOTALL)

# semver.org's grammar, with [0-9] because Python's \d also matches non-ASCII digits.
_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID = r"[0-9A-Za-z-]+"
_SEMVER = re.compile(
    rf"({_NUM})\.({_NUM})\.({_NUM})(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?(?:\+({_BUILD_ID}(?:\.{_BUILD_ID})*))?"
)

# Characters that would break the name's use as a URL path (query, fragment, escapes), as a
# directory, or as the comma-separated ``aliases`` string LXD splits (spec §1.7).
_NAME_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f?#%\\,]")

MAX_TAG_LENGTH = 1024
"""Longer tags are rejected, which also keeps numeric identifiers far below int()'s digit limit."""

SemverKey = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


def parse_tag(tag: str) -> tuple[str, str]:
    """``"<name>/v<semver>"`` -> ``(name, version without the "v")``; raises BadTagError."""
    if len(tag) > MAX_TAG_LENGTH:
        raise BadTagError(f"tag longer than {MAX_TAG_LENGTH} characters")
    match = _TAG.fullmatch(tag)
    if match is None:
        raise BadTagError(f"tag {tag!r} is not <name>/v<semver>")
    name, version = match.group(1), match.group(2)
    if _SEMVER.fullmatch(version) is None:
        raise BadTagError(f"tag {tag!r}: {version!r} is not MAJOR.MINOR.PATCH[-pre][+build]")
    if _NAME_FORBIDDEN.search(name) is not None:
        raise BadTagError(f"tag {tag!r}: the name has a character not allowed in a URL path or alias")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise BadTagError(f"tag {tag!r}: the name has an empty, '.' or '..' path segment")
    return name, version


def parse_semver(version: str) -> SemverKey:
    """A key that sorts versions by semver precedence (semver.org §11); raises BadTagError.

    A release sorts above its prereleases; prerelease identifiers compare numerically when numeric,
    in ASCII order otherwise, numeric below alphanumeric, and a shorter list below a longer one
    with the same prefix. Build metadata does not take part.
    """
    match = _SEMVER.fullmatch(version) if len(version) <= MAX_TAG_LENGTH else None
    if match is None:
        raise BadTagError(f"{version!r} is not MAJOR.MINOR.PATCH[-pre][+build]")
    major, minor, patch, pre = int(match.group(1)), int(match.group(2)), int(match.group(3)), match.group(4)
    if pre is None:
        return (major, minor, patch, 1, ())
    ids = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split("."))
    return (major, minor, patch, 0, ids)


def version_key(created: datetime, version: str) -> str:
    """``YYYYMMDD_hhmm_v<version>`` of ``created`` in UTC (spec §1.6).

    An aware time is converted to UTC; a naive one is taken as UTC already (the model keeps UTC
    times), never as the machine's local time, so the key cannot depend on ``TZ``.
    """
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    elif created.tzinfo is not UTC:
        created = created.astimezone(UTC)
    return (
        f"{created.year:04d}{created.month:02d}{created.day:02d}_{created.hour:02d}{created.minute:02d}"
        f"_v{version}"
    )
