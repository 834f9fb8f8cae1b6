"""`POST /slack/events`: Bolt's dispatch runs in a worker thread, never on the server's event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk.signature import SignatureVerifier

# As many as anyio's default thread limit: a press waiting for the database's write turn holds a thread.
BOLT_THREADS = 40

log = logging.getLogger("handoff_bot.slack.http")


def _to_response(bolt_response: BoltResponse) -> Response:
    response = Response(status_code=bolt_response.status, content=bolt_response.body)
    for name, values in bolt_response.headers.items():
        if name.lower() == "content-length":
            continue
        for value in values:
            response.headers.append(name, value)
    return response


def _signed_by_slack(verifier: SignatureVerifier, body: bytes, headers: dict[str, str | Sequence[str]]) -> bool:
    """Slack's v0 signature over the raw bytes, at most 5 minutes old (a timestamp that is no number: unsigned)."""
    timestamp, signature = (_first(headers.get(name)) for name in ("x-slack-request-timestamp", "x-slack-signature"))
    try:
        return verifier.is_valid(body, timestamp, signature)
    except ValueError:
        return False


def _first(value: str | Sequence[str] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value[0] if value else None


def mount_slack(api: FastAPI, bolt_app: App) -> None:
    # A pool of its own, reached with run_in_executor: under 32 concurrent presses, anyio's to_thread (a
    # Python queue and condition per hand-over) cost the event loop's thread more than the hand-over itself.
    pool = ThreadPoolExecutor(BOLT_THREADS, thread_name_prefix="bolt")
    # BoltRequest parses the body as it is built, before Bolt's own signature check, and raises on a body that
    # is no JSON object: so the signature is checked here first, with the secret Bolt checks it with (Bolt has
    # no public accessor for it), and nobody without it gets the body parsed at all.
    verifier = SignatureVerifier(bolt_app._signing_secret)

    def dispatch(body: bytes, query: str, headers: dict[str, str | Sequence[str]]) -> Response:
        """In a pool thread: parsing the body (form decoding, JSON) is work the event loop need not do."""
        if not _signed_by_slack(verifier, body, headers):
            return JSONResponse({"error": "invalid request"}, 401)  # Bolt's own answer to a bad signature
        try:
            bolt_request = BoltRequest(body=body.decode("utf-8", errors="replace"), query=query, headers=headers)
        except (ValueError, AttributeError, TypeError) as unreadable:  # not JSON, or not an object of Slack's shape
            log.warning("a signed Slack request with a body that cannot be read, answered 400: %r", unreadable)
            return JSONResponse({"error": "the body is not a Slack payload"}, 400)
        return _to_response(bolt_app.dispatch(bolt_request))

    @api.post("/slack/events", include_in_schema=False)
    async def slack_events(request: Request) -> Response:
        body = await request.body()
        headers: dict[str, str | Sequence[str]] = {name: request.headers.getlist(name) for name in request.headers}
        return await asyncio.get_running_loop().run_in_executor(pool, dispatch, body, request.url.query, headers)
