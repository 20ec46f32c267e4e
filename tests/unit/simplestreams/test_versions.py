"""Release tags, semver precedence and version keys (spec/simplestreams.md §1.6, §3.3, §4 item 6).

The semver examples are the valid and invalid lists published with semver.org's reference regular
expression; the precedence chain is the one in semver.org §11.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simplestreams import errors
from simplestreams.versions import MAX_TAG_LENGTH, parse_semver, parse_tag, version_key

SEMVER_VALID = [
    "0.0.4",
    "1.2.3",
    "10.20.30",
    "1.1.2-prerelease+meta",
    "1.1.2+meta",
    "1.1.2+meta-valid",
    "1.0.0-alpha",
    "1.0.0-beta",
    "1.0.0-alpha.beta",
    "1.0.0-alpha.beta.1",
    "1.0.0-alpha.1",
    "1.0.0-alpha0.valid",
    "1.0.0-alpha.0valid",
    "1.0.0-alpha-a.b-c-somethinglong+build.1-aef.1-its-okay",
    "1.0.0-rc.1+build.1",
    "2.0.0-rc.1+build.123",
    "1.2.3-beta",
    "10.2.3-DEV-SNAPSHOT",
    "1.2.3-SNAPSHOT-123",
    "2.0.0+build.1848",
    "2.0.1-alpha.1227",
    "1.0.0-alpha+beta",
    "1.2.3----RC-SNAPSHOT.12.9.1--.12+788",
    "1.2.3----R-S.12.9.1--.12+meta",
    "1.2.3----RC-SNAPSHOT.12.9.1--.12",
    "1.0.0+0.build.1-rc.10000aaa-kk-0.1",
    "99999999999999999999999.999999999999999999.99999999999999999",
    "1.0.0-0A.is.legal",
    "20.10.8-1",
]

SEMVER_INVALID = [
    "1",
    "1.2",
    "1.2.3-0123",
    "1.2.3-0123.0123",
    "1.1.2+.123",
    "+invalid",
    "-invalid",
    "-invalid+invalid",
    "-invalid.01",
    "alpha",
    "alpha.beta",
    "alpha_beta",
    "1.0.0-alpha_beta",
    "1.0.0-alpha..",
    "1.0.0-alpha..1",
    "01.1.1",
    "1.01.1",
    "1.1.01",
    "1.2.3.DEV",
    "1.2-SNAPSHOT",
    "1.2.31.2.3----RC-SNAPSHOT.12.09.1--..12+788",
    "1.2-RC-SNAPSHOT",
    "-1.0.3-gamma+b7718",
    "+justmeta",
    "9.8.7+meta+meta",
    "9.8.7-whatever+meta+meta",
    "99999999999999999999999.999999999999999999.99999999999999999----RC-SNAPSHOT.12.09.1--------------..12",
    "5.7-1",
    "1.0.0-",
    "1.0.0+",
    "1.0.0\n",
    " 1.0.0",
    "\uff11.0.0",  # a fullwidth digit: Python's \d would accept it
    "1.0.0-\u0661",
    "",
]


@pytest.mark.parametrize("version", SEMVER_VALID)
def test_valid_semver(version: str) -> None:
    assert parse_tag(f"image/v{version}") == ("image", version)
    parse_semver(version)


@pytest.mark.parametrize("version", SEMVER_INVALID)
def test_invalid_semver(version: str) -> None:
    with pytest.raises(errors.BadTagError):
        parse_tag(f"image/v{version}")
    with pytest.raises(errors.BadTagError):
        parse_semver(version)


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("docker/v20.10.8-1", ("docker", "20.10.8-1")),
        ("a/b/v1.0.0", ("a/b", "1.0.0")),
        ("a/v1.0.0/v2.0.0", ("a/v1.0.0", "2.0.0")),
        ("busybox/v1.36.1+deb12", ("busybox", "1.36.1+deb12")),
        ("my-image_2.x/v0.0.0", ("my-image_2.x", "0.0.0")),
        ("x:y/v1.0.0", ("x:y", "1.0.0")),
    ],
)
def test_parse_tag(tag: str, expected: tuple[str, str]) -> None:
    assert parse_tag(tag) == expected


@pytest.mark.parametrize(
    "tag",
    [
        "wordpress/v5.7-1",  # spec §3.3: no patch number
        "docker/20.10.8",  # no "v"
        "docker/V1.0.0",
        "v1.0.0",  # no name
        "/v1.0.0",
        "a//b/v1.0.0",
        "/a/v1.0.0",
        "a/./v1.0.0",
        "../v1.0.0",
        "a/../v1.0.0",
        ".",
        "a b/v1.0.0",  # \S+: no whitespace in the name
        "a\tb/v1.0.0",
        "a,b/v1.0.0",  # would split into two aliases
        "a?b/v1.0.0",
        "a#b/v1.0.0",
        "a%2f/v1.0.0",
        "a\\b/v1.0.0",
        "a\x00/v1.0.0",
        "docker/latest",
        "docker/v",
        "",
    ],
)
def test_bad_tags(tag: str) -> None:
    with pytest.raises(errors.BadTagError) as caught:
        parse_tag(tag)
    assert caught.value.reason == "bad-tag"


def test_tag_length_limit() -> None:
    version = "1.0.0-" + "a" * (MAX_TAG_LENGTH - 20)
    assert parse_tag(f"x/v{version}") == ("x", version)
    with pytest.raises(errors.BadTagError):
        parse_tag("x/v1.0.0-" + "1" * MAX_TAG_LENGTH)
    with pytest.raises(errors.BadTagError):
        parse_semver("1" * (MAX_TAG_LENGTH + 1) + ".0.0")


def test_semver_precedence_chain() -> None:
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.9.0",
        "1.10.0",
        "2.0.0",
        "2.1.0",
        "2.1.1",
    ]
    keys = [parse_semver(version) for version in chain]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


def test_semver_build_metadata_has_no_precedence() -> None:
    assert parse_semver("1.0.0+a") == parse_semver("1.0.0+b") == parse_semver("1.0.0")
    assert parse_semver("1.0.0-1+x") == parse_semver("1.0.0-1")


def test_packaging_revision_sorts_numerically() -> None:
    assert parse_semver("20.10.8-2") < parse_semver("20.10.8-10") < parse_semver("20.10.8-rc")


@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6)),
        min_size=2,
        max_size=10,
    )
)
def test_release_precedence_is_numeric(triples: list[tuple[int, int, int]]) -> None:
    versions = [f"{a}.{b}.{c}" for a, b, c in triples]
    by_key = sorted(versions, key=parse_semver)
    assert [tuple(int(n) for n in v.split(".")) for v in by_key] == sorted(triples)


@given(
    st.from_regex(r"[a-z0-9][a-z0-9._-]{0,15}(/[a-z0-9][a-z0-9._-]{0,15}){0,2}", fullmatch=True),
    st.integers(0, 999),
    st.integers(0, 999),
    st.integers(0, 999),
    st.none() | st.from_regex(r"[0-9A-Za-z-]{1,8}", fullmatch=True),
)
def test_tag_round_trip(name: str, major: int, minor: int, patch: int, build: str | None) -> None:
    version = f"{major}.{minor}.{patch}" + (f"+{build}" if build else "")
    if any(segment in (".", "..") for segment in name.split("/")):
        with pytest.raises(errors.BadTagError):
            parse_tag(f"{name}/v{version}")
    else:
        assert parse_tag(f"{name}/v{version}") == (name, version)


def test_version_key_format() -> None:
    assert (
        version_key(datetime(2021, 8, 28, 15, 4, 59, tzinfo=UTC), "20.10.8-1") == "20210828_1504_v20.10.8-1"
    )


def test_version_key_converts_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert version_key(datetime(2021, 8, 29, 1, 30, tzinfo=plus_two), "1.0.0") == "20210828_2330_v1.0.0"
    # A naive time is already UTC by the model's convention, never local time.
    assert version_key(datetime(2021, 8, 28, 23, 30), "1.0.0") == "20210828_2330_v1.0.0"


def test_version_key_date_prefix_lxd_accepts() -> None:
    for moment in (datetime(999, 1, 2, 3, 4, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC)):
        key = version_key(moment, "1.0.0")
        assert len(key) >= 8
        assert datetime.strptime(key[:13], "%Y%m%d_%H%M").replace(tzinfo=UTC) == moment


def test_version_key_orders_same_day_builds_by_time() -> None:
    """OctoLXD's same-day keys put v1.10.0 below v1.9.0 (spec §1.6); ours order by build time."""
    older = version_key(datetime(2026, 3, 1, 10, 0, tzinfo=UTC), "1.9.0")
    newer = version_key(datetime(2026, 3, 1, 14, 0, tzinfo=UTC), "1.10.0")
    assert older < newer
    octolxd = {version: f"20260301_v{version}" for version in ("1.9.0", "1.10.0")}
    assert octolxd["1.10.0"] < octolxd["1.9.0"]  # the defect being fixed


@pytest.fixture
def local_time_zone() -> Iterator[None]:
    saved = os.environ.get("TZ")
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.mark.usefixtures("local_time_zone")
def test_version_key_ignores_machine_time_zone() -> None:
    aware = datetime(2026, 11, 26, 23, 45, tzinfo=UTC)
    naive = datetime(2026, 11, 26, 23, 45)
    seen = set()
    local_days = set()
    for zone in ("UTC0", "EST+5", "IST-5:30", "NZST-12"):  # POSIX TZ strings: no tzdata needed
        os.environ["TZ"] = zone
        time.tzset()
        seen.add((version_key(aware, "1.0.0"), version_key(naive, "1.0.0")))
        local_days.add(f"{aware.astimezone():%Y%m%d_%H%M}")
    assert seen == {("20261126_2345_v1.0.0", "20261126_2345_v1.0.0")}
    assert len(local_days) == 4  # the zones really changed what local time would have given
