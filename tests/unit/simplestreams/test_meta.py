"""simplestreams.meta: meta tarballs in every accepted form, every malformation, and a fuzz test that
holds parse_meta to its single error type (spec/simplestreams.md §3.3, §4 item 8)."""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simplestreams import meta
from simplestreams.arch import KERNEL_NAMES
from simplestreams.errors import BadMetadataError
from simplestreams.meta import metadata_from_json, metadata_to_json, parse_meta
from simplestreams.synthetic import COMPRESSIONS, CREATED, meta_bytes

TEMPLATES = {"hostname.tpl": b"{{ container.name }}\n", "hosts.tpl": b"127.0.0.1 localhost\n"}


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("dot_slash", [False, True], ids=["bare", "dot-slash"])
def test_every_compression_and_member_name(compression: str, dot_slash: bool) -> None:
    data = meta_bytes(
        "aarch64",
        compression=compression,
        dot_slash=dot_slash,
        templates=TEMPLATES,
        expiry_date=CREATED.replace(month=9),
        properties={"os": "busybox", "release": "1.35", "description": "Busybox"},
    )
    metadata = parse_meta(data)
    assert metadata.architecture == "aarch64"
    assert metadata.creation_date == CREATED
    assert metadata.creation_date is not None and metadata.creation_date.tzinfo is UTC
    assert metadata.expiry_date == datetime(2021, 9, 28, 15, 4, tzinfo=UTC)
    assert dict(metadata.properties) == {"description": "Busybox", "os": "busybox", "release": "1.35"}
    assert metadata.templates == ("hostname.tpl", "hosts.tpl")


def test_compression_is_detected_by_magic_not_name() -> None:
    # Publishers call every meta file .tar.xz; the bytes decide. zstd and gzip magics differ from xz's.
    assert parse_meta(meta_bytes(compression="zstd")).architecture == "x86_64"
    assert meta_bytes(compression="zstd")[:4] == b"\x28\xb5\x2f\xfd"


def test_scalars_keep_their_text() -> None:
    # LXD decodes properties into Go strings; an unquoted 20.10 must not become the float 20.1.
    document = (
        b"architecture: amd64\ncreation_date: 1630163040\n"
        b"properties:\n  release: 20.10\n  serial: 0012\n  cloud: true\n  empty:\n"
    )
    metadata = parse_meta(meta_bytes(metadata_yaml=document))
    assert metadata.architecture == "amd64"
    assert dict(metadata.properties) == {"cloud": "true", "empty": "", "release": "20.10", "serial": "0012"}
    assert metadata.expiry_date is None
    assert metadata.templates == ()


def test_optional_fields_may_be_absent_or_null() -> None:
    metadata = parse_meta(meta_bytes(metadata_yaml=b"architecture: x86_64\nexpiry_date: ~\nproperties:\n"))
    assert (metadata.creation_date, metadata.expiry_date, dict(metadata.properties)) == (None, None, {})


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"creation_date: 1\n", "no architecture"),
        (b"architecture: ''\n", "no architecture"),
        (b"architecture: [x86_64]\n", "no architecture"),
        (b"architecture: x86-64\n", "unknown architecture"),
        (b"- architecture: x86_64\n", "does not hold a mapping"),
        (b"just a string\n", "does not hold a mapping"),
        (b"", "does not hold a mapping"),
        (b"architecture: x86_64\ncreation_date: yesterday\n", "creation_date is not an integer"),
        (b"architecture: x86_64\ncreation_date: 1.5\n", "creation_date is not an integer"),
        (
            b"architecture: x86_64\nexpiry_date: 99999999999999999\n",
            "expiry_date 99999999999999999 is out of range",
        ),
        (b"architecture: x86_64\nproperties: [a, b]\n", "properties is not a mapping"),
        (b"architecture: x86_64\nproperties:\n  os: [a]\n", "property 'os' is not a plain value"),
        (b"architecture: x86_64\nproperties: {os: {a: b}}\n", "property 'os' is not a plain value"),
        (b"architecture: x86_64\n  bad: indent\n", "not a readable meta tarball"),
        (b"architecture: \xc3\x28\n", "not a readable meta tarball"),
    ],
)
def test_malformed_metadata_yaml(document: bytes, message: str) -> None:
    with pytest.raises(BadMetadataError, match=message):
        parse_meta(meta_bytes(metadata_yaml=document))


def test_missing_metadata_yaml() -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo("meta.yaml")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"a: b"))
    with pytest.raises(BadMetadataError, match=r"no metadata\.yaml"):
        parse_meta(raw.getvalue())


def test_two_metadata_yaml_members_are_ambiguous() -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name in ("metadata.yaml", "./metadata.yaml"):
            info = tarfile.TarInfo(name)
            info.size = 21
            archive.addfile(info, io.BytesIO(b"architecture: x86_64\n"))
    with pytest.raises(BadMetadataError, match="more than one"):
        parse_meta(raw.getvalue())


def test_metadata_yaml_must_be_a_regular_file() -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo("metadata.yaml")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        archive.addfile(info)
    with pytest.raises(BadMetadataError, match="not a regular file"):
        parse_meta(raw.getvalue())


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_truncated_archive(compression: str) -> None:
    data = meta_bytes(compression=compression, templates=TEMPLATES)
    # A compressed stream fails anywhere (its checksum is at the end); a plain tar only where a header
    # or member is cut, since its trailing zero padding is optional to readers.
    cuts = (
        (1, 300, 600, 1600) if compression == "none" else (1, len(data) // 3, len(data) // 2, len(data) - 7)
    )
    for cut in cuts:
        with pytest.raises(BadMetadataError):
            parse_meta(data[:cut])


def test_garbled_header_after_the_first_is_refused_like_tar_does() -> None:
    # Python's tarfile would stop silently at a bad second header; tar(1), which LXD uses, fails.
    data = bytearray(meta_bytes(compression="none", templates=TEMPLATES))
    data[1536 : 1536 + 512] = b"\x01" * 512
    with pytest.raises(BadMetadataError, match="bad header"):
        parse_meta(bytes(data))


def test_member_count_is_bounded() -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        document = tarfile.TarInfo("metadata.yaml")
        document.size = 21
        archive.addfile(document, io.BytesIO(b"architecture: x86_64\n"))
        for index in range(meta.MAX_MEMBERS):
            archive.addfile(tarfile.TarInfo(f"templates/{index}"))
    with pytest.raises(BadMetadataError, match="more than 10000 members"):
        parse_meta(raw.getvalue())


def test_empty_and_garbage_input() -> None:
    with pytest.raises(BadMetadataError, match="empty"):
        parse_meta(b"")
    with pytest.raises(BadMetadataError):
        parse_meta(b"\xfd7zXZ\x00" + b"\x00" * 100)
    with pytest.raises(BadMetadataError):
        parse_meta(b"not a tarball at all" * 50)


def test_oversized_metadata_yaml_is_refused_before_reading() -> None:
    document = b"architecture: x86_64\n#" + b"x" * meta.MAX_YAML_BYTES + b"\n"
    with pytest.raises(BadMetadataError, match="over the"):
        parse_meta(meta_bytes(metadata_yaml=document, compression="zstd"))


def test_decompression_bomb_stops_at_the_budget() -> None:
    # 64 MiB + 1 of zeros behind metadata.yaml compresses to a few kB; reading must stop at the budget.
    size = meta.MAX_TAR_BYTES + 1
    header = tarfile.TarInfo("templates/bomb")
    header.size = size
    first = tarfile.TarInfo("metadata.yaml")
    document = b"architecture: x86_64\n"
    first.size = len(document)
    prefix = first.tobuf() + document + b"\x00" * (512 - len(document)) + header.tobuf()
    compressor = zstandard.ZstdCompressor().compressobj()
    zero = bytes(1 << 20)
    parts = [compressor.compress(prefix)]
    parts += [compressor.compress(zero) for _ in range(size // len(zero) + 1)]
    parts.append(compressor.flush())
    bomb = b"".join(parts)
    assert len(bomb) < 100_000
    with pytest.raises(BadMetadataError, match="decompresses to more than"):
        parse_meta(bomb)


def test_json_round_trip_for_the_cache() -> None:
    metadata = parse_meta(meta_bytes(templates=TEMPLATES, expiry_date=CREATED.replace(year=2022)))
    assert metadata_from_json(metadata_to_json(metadata)) == metadata
    empty = parse_meta(meta_bytes(metadata_yaml=b"architecture: s390x\n"))
    assert metadata_from_json(metadata_to_json(empty)) == empty


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        {},
        {"architecture": 1, "creation_date": None, "expiry_date": None, "properties": {}, "templates": []},
    ],
)
def test_json_of_the_wrong_shape_is_a_value_error(value: object) -> None:
    with pytest.raises(ValueError, match="not cached metadata"):
        metadata_from_json(value)


_SEEDS = [meta_bytes(compression=c, templates=TEMPLATES) for c in COMPRESSIONS]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(_SEEDS),
    cut=st.integers(min_value=0, max_value=20_000),
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=20_000), st.integers(0, 255)), max_size=8),
)
def test_fuzz_only_bad_metadata_error(seed: bytes, cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(seed[: max(1, cut % (len(seed) + 1))])
    for position, value in flips:
        data[position % len(data)] = value
    try:
        metadata = parse_meta(bytes(data))
    except BadMetadataError:
        return
    assert metadata.architecture == "x86_64"


@settings(max_examples=300, deadline=None)
@given(
    document=st.one_of(
        st.binary(max_size=300),
        st.text(alphabet="architecture:x86_64 properties{}[]-?&*!|>'\"#\n\t,0123456789~.", max_size=300).map(
            str.encode
        ),
    )
)
def test_fuzz_metadata_yaml_only_bad_metadata_error(document: bytes) -> None:
    try:
        metadata = parse_meta(meta_bytes(metadata_yaml=document, compression="none"))
    except BadMetadataError:
        return
    assert metadata.architecture in KERNEL_NAMES
