from __future__ import annotations

from starlette.testclient import TestClient

from dataplane.overlay.http import SourceStatus, Status, create_app


def make_status(device_up: bool = True, synced: bool = True) -> Status:
    return Status(
        device="overlay0",
        device_up=device_up,
        sources=(
            SourceStatus("static", True, 2, 1_700_000_000.0),
            SourceStatus("dns:ws.svc", synced, 1 if synced else 0, 1_700_000_001.0 if synced else None),
        ),
        peers=("192.0.2.2", "192.0.2.3"),
        fdb_entries=7,
        counters={"rx_frames": 10, "tx_frames": 12, "rx_bytes": 1000, "tx_bytes": 1200, "drop_wrong_vni": 3},
        pump={"syscalls": 40.0, "rx_batch_mean": 4.5, "drops": {"vnet.gso_type": 2}, "mode": "gso"},
    )


def client(status: Status) -> TestClient:
    async def snapshot() -> Status:
        return status

    return TestClient(create_app(snapshot, lambda: {"VXLAN": {"Interface": "overlay0"}}))


def test_health_is_2xx_only_when_up_and_every_source_synced() -> None:
    ok = client(make_status()).get("/health")
    assert ok.status_code == 200
    body = ok.json()
    assert body["healthy"] is True
    assert body["learnedMacs"] == 7
    assert [s["name"] for s in body["sources"]] == ["static", "dns:ws.svc"]

    unsynced = client(make_status(synced=False)).get("/health")
    assert unsynced.status_code == 503
    assert unsynced.json()["sources"][1] == {
        "name": "dns:ws.svc",
        "synced": False,
        "peers": 0,
        "lastSync": None,
    }

    down = client(make_status(device_up=False)).get("/health")
    assert down.status_code == 503
    assert down.json()["device"] == {"name": "overlay0", "up": False}


def test_config_keeps_kubelan_field_names() -> None:
    assert client(make_status()).get("/config").json() == {"VXLAN": {"Interface": "overlay0"}}


def test_metrics_in_prometheus_text_format() -> None:
    response = client(make_status()).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'webspaces_overlay_frames_total{direction="rx"} 10.0' in text
    assert 'webspaces_overlay_bytes_total{direction="tx"} 1200.0' in text
    assert 'webspaces_overlay_drops_total{reason="wrong_vni"} 3.0' in text
    assert "webspaces_overlay_fdb_entries 7.0" in text
    assert 'webspaces_overlay_peers{source="dns:ws.svc"} 1.0' in text
    assert 'webspaces_overlay_datapath{stat="rx_batch_mean"} 4.5' in text
    assert 'webspaces_overlay_datapath{stat="drops.vnet.gso_type"} 2.0' in text
    assert "mode" not in text
    assert "webspaces_overlay_healthy 1.0" in text


def test_unknown_path_and_method() -> None:
    c = client(make_status())
    assert c.get("/nope").status_code == 404
    assert c.post("/health").status_code == 405
