"""`GET /api/stats?period=7d`: the handoff funnel figures (see `handoffs.metrics` for what each one means)."""

from __future__ import annotations

from typing import Annotated, Any

from anyio import to_thread
from fastapi import FastAPI, Query
from pydantic import AfterValidator

from bot.api import ApiActor
from bot.runtime import Runtime
from handoffs.metrics import collect_stats, parse_period
from storage.metrics_queries import MetricsQueries

DEFAULT_PERIOD = "7d"


def _valid_period(text: str) -> str:
    parse_period(text)  # its ValueError becomes a 422 field error at ["query", "period"]
    return text


Period = Annotated[
    str,
    Query(description="How far back handoffs were created: a number of days, 1d to 365d (7d, 30d, 90d).",
          examples=["7d", "30d", "90d"], max_length=10),
    AfterValidator(_valid_period),
]


def mount_stats(api: FastAPI, runtime: Runtime) -> None:
    """Add the stats route to the intake API (same bearer tokens as the other routes)."""
    queries = MetricsQueries(runtime.db)

    @api.get("/api/stats")
    async def stats(actor: ApiActor, period: Period = DEFAULT_PERIOD) -> dict[str, Any]:
        """Figures for the handoffs created in the last `period`, from their event logs up to now; `webhooks`
        counts the webhook deliveries enqueued in that period by state (sent, failed, pending)."""

        def load() -> dict[str, Any]:
            now, span = runtime.clock(), parse_period(period)
            body = collect_stats(queries, period=span, now=now).as_dict()
            body["webhooks"] = queries.webhook_deliveries(since=now - span, until=now).as_dict()
            return body

        return await to_thread.run_sync(load)
