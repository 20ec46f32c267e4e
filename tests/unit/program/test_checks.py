"""The shared value checkers: what they accept, normalise and refuse."""

from __future__ import annotations

import pytest

from program.checks import check_host_port, check_listen


def test_listen_addresses() -> None:
    assert check_listen(" 127.0.0.1:8181 ") == "127.0.0.1:8181"
    assert check_listen(":8181") == "0.0.0.0:8181"  # kubelan's every-address form
    assert [check_listen(off) for off in ("", "off", "OFF", "none")] == ["", "", "", ""]
    for bad, fragment in (("localhost", "ADDR:PORT"), ("127.0.0.1:0", "1-65535"), ("nowhere:80", "IPv4")):
        with pytest.raises(ValueError, match=fragment):
            check_listen(bad)


def test_host_and_port_with_a_default_port() -> None:
    assert check_host_port("192.0.2.53", default_port=53) == ("192.0.2.53", 53)
    assert check_host_port("192.0.2.53:5353", default_port=53) == ("192.0.2.53", 5353)
    with pytest.raises(ValueError, match="ADDR:PORT"):
        check_host_port("192.0.2.53")
