"""Parse a meta tarball (``lxd.<arch>.tar.xz``) into :class:`~simplestreams.model.Metadata`.

The tarball is untrusted input from a release, so (spec/simplestreams.md §3.3, §4 item 8):

- the compression is detected from the magic bytes, not the name: xz, gzip, zstd or a plain tar,
  because publishers name every meta file ``.tar.xz`` whatever is inside;
- ``metadata.yaml`` and ``./metadata.yaml`` are both accepted (OctoLXD matched the exact name only;
  ``tar -C dir .`` writes the second form);
- the decompressed stream is read through a byte budget (:data:`MAX_TAR_BYTES`) and the YAML through a
  smaller one (:data:`MAX_YAML_BYTES`), so a small compression bomb cannot take the server's memory;
- any malformation raises :class:`~simplestreams.errors.BadMetadataError` and nothing else, which the
  resolver turns into one skipped architecture (a fuzz test enforces the single error type).

The YAML is read with PyYAML's *base* loader, which is safe and keeps every scalar as the text that was
written. LXD decodes ``properties`` into Go strings, which also keeps the text, so an unquoted
``release: 20.10`` stays ``"20.10"`` here instead of becoming the float 20.1.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import lzma
import re
import tarfile
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from tarfile import InvalidHeaderError, TruncatedHeaderError  # type: ignore[attr-defined]
from typing import Any, Protocol, Self, cast

import yaml
import zstandard

from . import model
from .arch import kernel_arch
from .errors import BadMetadataError, UnknownArchError

MAX_TAR_BYTES = 64 * 1024 * 1024
"""Decompressed bytes read at most; a meta tarball holds a YAML file and a few small templates."""

MAX_YAML_BYTES = 1024 * 1024
"""Largest ``metadata.yaml`` accepted."""

MAX_MEMBERS = 10_000
"""Most archive members (metadata.yaml plus templates) accepted."""

_XZ_MAGIC = b"\xfd7zXZ\x00"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_NAMES = ("metadata.yaml", "./metadata.yaml")
_TEMPLATE_PREFIXES = ("templates/", "./templates/")
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_NULLS = ("", "~", "null", "Null", "NULL")

# What the decompressors, tarfile and PyYAML raise on bad input; each becomes BadMetadataError.
_DECODE_ERRORS = (
    tarfile.TarError,
    lzma.LZMAError,
    zlib.error,
    zstandard.ZstdError,
    EOFError,
    OSError,
    ValueError,
    UnicodeError,
    yaml.YAMLError,
    RecursionError,
    TypeError,
)


def parse_meta(data: bytes) -> model.Metadata:
    """The metadata of the meta tarball ``data``; raises BadMetadataError when it is malformed."""
    try:
        document, templates = _read_tar(data)
    except BadMetadataError:
        raise
    except _DECODE_ERRORS as exc:
        raise BadMetadataError(f"not a readable meta tarball: {type(exc).__name__}: {exc}") from None
    return _metadata(document, templates)


def metadata_to_json(metadata: model.Metadata) -> dict[str, Any]:
    """A JSON-serialisable form of ``metadata`` (for the hash cache); see :func:`metadata_from_json`."""
    return {
        "architecture": metadata.architecture,
        "creation_date": _to_seconds(metadata.creation_date),
        "expiry_date": _to_seconds(metadata.expiry_date),
        "properties": dict(metadata.properties),
        "templates": list(metadata.templates),
    }


def metadata_from_json(value: Any) -> model.Metadata:
    """The inverse of :func:`metadata_to_json`; ValueError when ``value`` does not have its shape
    (a hand-edited or foreign cache file must not crash the resolver)."""
    try:
        properties = value["properties"]
        templates = value["templates"]
        metadata = model.Metadata(
            architecture=_require_str(value["architecture"]),
            creation_date=_from_seconds(value["creation_date"]),
            expiry_date=_from_seconds(value["expiry_date"]),
            properties={_require_str(k): _require_str(v) for k, v in properties.items()},
            templates=tuple(_require_str(name) for name in templates),
        )
    except (KeyError, TypeError, AttributeError, OverflowError, OSError) as exc:
        raise ValueError(f"not cached metadata: {exc}") from None
    return metadata


class _Stream(Protocol):
    """What :class:`_Budget` needs of a decompressor (LZMAFile, GzipFile, zstandard's reader)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class _Budget(io.RawIOBase):
    """A read-only stream over a decompressor that fails once more than ``limit`` bytes came out."""

    def __init__(self, source: _Stream, limit: int) -> None:
        self._source = source
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self._source.read(min(len(view), self._left + 1))
        if len(chunk) > self._left:
            raise BadMetadataError(f"the meta tarball decompresses to more than {MAX_TAR_BYTES} bytes")
        self._left -= len(chunk)
        view[: len(chunk)] = chunk
        return len(chunk)


def _decompressor(data: bytes) -> _Stream:
    raw = io.BytesIO(data)
    if data.startswith(_XZ_MAGIC):
        return lzma.LZMAFile(raw, format=lzma.FORMAT_XZ)
    if data.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if data.startswith(_ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return raw


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile ends a stream silently at a cut or garbled header after the first; tar(1), which LXD
    unpacks with, fails there, so a meta tarball that tar would refuse is refused here too."""

    @classmethod
    def fromtarfile(cls, tarfile: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tarfile)
        except (TruncatedHeaderError, InvalidHeaderError) as exc:
            raise BadMetadataError(f"the meta tarball has a bad header at {tarfile.offset}: {exc}") from None


def _read_tar(data: bytes) -> tuple[Any, tuple[str, ...]]:
    """The parsed ``metadata.yaml`` and the template names found in the archive."""
    if not data:
        raise BadMetadataError("the meta tarball is empty")
    documents: list[Any] = []
    templates: list[str] = []
    with contextlib.closing(_decompressor(data)) as stream:
        budget = _Budget(stream, MAX_TAR_BYTES)
        with tarfile.open(fileobj=budget, mode="r|", tarinfo=_StrictTarInfo) as archive:
            for count, member in enumerate(archive):
                cast(Any, archive).members.clear()  # stream mode keeps every header otherwise
                if count >= MAX_MEMBERS:
                    raise BadMetadataError(f"the meta tarball has more than {MAX_MEMBERS} members")
                name = member.name
                if name in _NAMES:
                    if documents:
                        raise BadMetadataError("the meta tarball holds more than one metadata.yaml")
                    documents.append(_read_yaml(archive, member))
                    continue
                for prefix in _TEMPLATE_PREFIXES:
                    if name.startswith(prefix) and member.isfile() and len(name) > len(prefix):
                        templates.append(name[len(prefix) :])
        # Decompress to the end, so a truncated stream or a bad checksum after the tar's end-of-archive
        # blocks is found here rather than by LXD's unpacker at install time.
        while budget.read(1 << 20):
            pass
    if not documents:
        raise BadMetadataError("the meta tarball has no metadata.yaml")
    return documents[0], tuple(sorted(templates))


def _read_yaml(archive: tarfile.TarFile, member: tarfile.TarInfo) -> Any:
    if not member.isfile():
        raise BadMetadataError("metadata.yaml is not a regular file")
    if member.size > MAX_YAML_BYTES:
        raise BadMetadataError(f"metadata.yaml is {member.size} bytes, over the {MAX_YAML_BYTES} limit")
    handle = archive.extractfile(member)
    if handle is None:
        raise BadMetadataError("metadata.yaml cannot be read")
    with handle:
        text = handle.read(MAX_YAML_BYTES + 1)
    if len(text) != member.size:
        raise BadMetadataError("metadata.yaml is truncated")
    loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)
    return yaml.load(text, Loader=loader)  # the base loader builds only str, list and dict


def _metadata(document: Any, templates: tuple[str, ...]) -> model.Metadata:
    if not isinstance(document, dict):
        raise BadMetadataError("metadata.yaml does not hold a mapping")
    architecture = document.get("architecture")
    if not isinstance(architecture, str) or not architecture:
        raise BadMetadataError("metadata.yaml has no architecture")
    try:
        kernel_arch(architecture)
    except UnknownArchError as exc:
        raise BadMetadataError(f"metadata.yaml: {exc}") from None
    return model.Metadata(
        architecture=architecture,
        creation_date=_date(document, "creation_date"),
        expiry_date=_date(document, "expiry_date"),
        properties=_properties(document.get("properties")),
        templates=templates,
    )


def _date(document: Mapping[str, Any], key: str) -> datetime | None:
    """A Unix-seconds field as an aware UTC time; absent or null is None."""
    value = document.get(key)
    if value is None or (isinstance(value, str) and value.strip() in _NULLS):
        return None
    if not isinstance(value, str) or _INTEGER.fullmatch(value.strip()) is None:
        raise BadMetadataError(f"metadata.yaml: {key} is not an integer number of Unix seconds")
    try:
        return datetime.fromtimestamp(int(value.strip()), UTC)
    except (OverflowError, OSError, ValueError):
        raise BadMetadataError(f"metadata.yaml: {key} {value.strip()} is out of range") from None


def _properties(value: Any) -> dict[str, str]:
    """``properties`` as str -> str; scalars are already text (base loader), anything nested is an error."""
    if value is None or (isinstance(value, str) and value.strip() in _NULLS):
        return {}
    if not isinstance(value, dict):
        raise BadMetadataError("metadata.yaml: properties is not a mapping")
    properties: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise BadMetadataError(f"metadata.yaml: property {key!r} is not a plain value")
        properties[key] = item
    return dict(sorted(properties.items()))


def _to_seconds(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def _from_seconds(value: Any) -> datetime | None:
    if value is None:
        return None
    if type(value) is not int:
        raise TypeError(f"not seconds: {value!r}")
    return datetime.fromtimestamp(value, UTC)


def _require_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"not a string: {value!r}")
    return value
