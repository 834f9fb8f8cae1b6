"""`POST /slack/events`: Bolt's dispatch runs in a worker thread, never on the server's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request, Response
from slack_bolt import App, BoltRequest, BoltResponse

# As many as anyio's default thread limit: a press waiting for the database's write turn holds a thread.
BOLT_THREADS = 40


def _to_response(bolt_response: BoltResponse) -> Response:
    response = Response(status_code=bolt_response.status, content=bolt_response.body)
    for name, values in bolt_response.headers.items():
        if name.lower() == "content-length":
            continue
        for value in values:
            response.headers.append(name, value)
    return response


def mount_slack(api: FastAPI, bolt_app: App) -> None:
    # A pool of its own, reached with run_in_executor: under 32 concurrent presses, anyio's to_thread (a
    # Python queue and condition per hand-over) cost the event loop's thread more than the hand-over itself.
    pool = ThreadPoolExecutor(BOLT_THREADS, thread_name_prefix="bolt")

    def dispatch(body: bytes, query: str, headers: dict[str, str | Sequence[str]]) -> Response:
        """In a pool thread: parsing the body (form decoding, JSON) is work the event loop need not do."""
        bolt_request = BoltRequest(body=body.decode("utf-8", errors="replace"), query=query, headers=headers)
        return _to_response(bolt_app.dispatch(bolt_request))

    @api.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        body = await request.body()
        headers: dict[str, str | Sequence[str]] = {name: request.headers.getlist(name) for name in request.headers}
        return await asyncio.get_running_loop().run_in_executor(pool, dispatch, body, request.url.query, headers)
