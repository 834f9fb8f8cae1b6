"""`POST /slack/events`: Bolt's dispatch runs in a worker thread, never on the server's event loop."""

from __future__ import annotations

from collections.abc import Sequence

from anyio import to_thread
from fastapi import FastAPI, Request, Response
from slack_bolt import App, BoltRequest, BoltResponse


def _to_response(bolt_response: BoltResponse) -> Response:
    response = Response(status_code=bolt_response.status, content=bolt_response.body)
    for name, values in bolt_response.headers.items():
        if name.lower() == "content-length":
            continue
        for value in values:
            response.headers.append(name, value)
    return response


def mount_slack(api: FastAPI, bolt_app: App) -> None:
    @api.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        body = (await request.body()).decode("utf-8", errors="replace")
        headers: dict[str, str | Sequence[str]] = {}
        for name in request.headers:
            headers[name] = request.headers.getlist(name)
        bolt_request = BoltRequest(body=body, query=request.url.query, headers=headers)
        return _to_response(await to_thread.run_sync(bolt_app.dispatch, bolt_request))
