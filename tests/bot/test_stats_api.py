"""`GET /api/stats` over real HTTP (the `live_server` fixture), on SQLite and PostgreSQL.

The handoffs are seeded through the real service on a fake clock (tests/metrics_scenario.py), and the answer
is compared with the figures worked out by hand there.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from bot.runtime import Runtime, build_runtime
from handoffs.config import HandoffConfig
from tests.conftest import LiveServer, make_settings
from tests.factories import NOW
from tests.metrics_scenario import (
    EXPECTED_7D_BY_PRODUCER,
    EXPECTED_7D_CREATED_BY,
    EXPECTED_7D_TOTAL,
    EXPECTED_30D_TOTAL,
    EXPECTED_STALLED_NOW,
    FakeClock,
    seed_funnel,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runtime(database_url: str, handoff_config: HandoffConfig, clock: FakeClock) -> Iterator[Runtime]:
    """The shared fixture's runtime, on a clock the test moves (live_server serves this one)."""
    rt = build_runtime(make_settings(database_url), config=handoff_config, clock=clock)
    yield rt
    rt.close()


@pytest.fixture
def client(live_server: LiveServer, auth_headers: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, headers=auth_headers, timeout=10) as http:
        yield http


def test_stats_for_the_default_period_match_the_hand_computed_figures(
    client: httpx.Client, runtime: Runtime, clock: FakeClock
) -> None:
    seed_funnel(runtime, clock)

    response = client.get("/api/stats")

    assert response.status_code == 200
    body = response.json()
    assert (body["period"], body["since"], body["until"]) == ("7d", (NOW - timedelta(days=7)).isoformat(),
                                                              NOW.isoformat())
    assert body["stalled_now"] == EXPECTED_STALLED_NOW
    assert body["total"] == EXPECTED_7D_TOTAL
    assert body["by_producer"] == EXPECTED_7D_BY_PRODUCER
    for breakdown, created in EXPECTED_7D_CREATED_BY.items():
        assert {name: figures["created"] for name, figures in body[breakdown].items()} == created
    assert body["by_owner"]["UBEN"]["rejected"] == 1  # D keeps the owner who rejected it
    assert body["by_kind"]["reply"]["closed_by_outcome"] == {"approved": 1}


def test_a_longer_period_takes_in_older_handoffs(client: httpx.Client, runtime: Runtime, clock: FakeClock) -> None:
    seed_funnel(runtime, clock)

    assert client.get("/api/stats", params={"period": "7d"}).json()["total"] == EXPECTED_7D_TOTAL
    month = client.get("/api/stats", params={"period": "30d"}).json()
    assert month["period"] == "30d"
    assert month["total"] == EXPECTED_30D_TOTAL
    assert client.get("/api/stats", params={"period": "1d"}).json()["total"]["created"] == 0


def test_figures_follow_the_clock(client: httpx.Client, runtime: Runtime, clock: FakeClock) -> None:
    seed_funnel(runtime, clock)
    clock.now = NOW + timedelta(days=5)  # A-E were created 8 days before: out of a 7-day window

    body = client.get("/api/stats").json()

    assert body["total"]["created"] == 0
    assert body["stalled_now"] == EXPECTED_STALLED_NOW


@pytest.mark.parametrize("period", ["4h", "0d", "366d", "week", "7", "1w"])
def test_a_bad_period_is_a_field_error(client: httpx.Client, period: str) -> None:
    response = client.get("/api/stats", params={"period": period})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "period"]
    assert "7d, 30d or 90d" in error["msg"]


def test_stats_need_a_token(live_server: LiveServer) -> None:
    assert httpx.get(f"{live_server.url}/api/stats").status_code == 401
    wrong = httpx.get(f"{live_server.url}/api/stats", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_stats_are_in_the_openapi_document(client: httpx.Client) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/stats"]["get"]
    period = next(p for p in operation["parameters"] if p["name"] == "period")
    assert (period["in"], period["required"], period["schema"]["default"]) == ("query", False, "7d")
