from __future__ import annotations

import httpx

from tests.conftest import LiveServer


def test_create_and_read_back_over_http(live_server: LiveServer, auth_headers: dict[str, str]) -> None:
    body = {"title": "Call ACME back", "next_action": "Phone Jane"}
    created = httpx.post(f"{live_server.url}/api/handoffs", json=body, headers=auth_headers)
    assert created.status_code == 201, created.text
    ref = created.json()["ref"]
    shown = httpx.get(f"{live_server.url}/api/handoffs/{ref}", headers=auth_headers)
    assert shown.status_code == 200
    assert shown.json()["title"] == "Call ACME back"
    assert [e["action"] for e in shown.json()["events"]] == ["created"]
