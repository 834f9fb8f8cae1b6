"""The Bolt app factory: a fresh app per call, wired to the runtime; no Slack call at start-up."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient

from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack.listeners import register_listeners

log = logging.getLogger("handoff_bot.slack")

SLACK_TIMEOUT_SECONDS = 10


def create_slack_client(settings: Settings) -> WebClient:
    """The Web API client; retries are the outbox's job, so the SDK's own retry handlers are off."""
    return WebClient(
        token=settings.slack_bot_token, base_url=settings.slack_api_url, timeout=SLACK_TIMEOUT_SECONDS,
        retry_handlers=[],
    )


def create_bolt_app(runtime: Runtime, client: WebClient, *, socket_mode: bool = False) -> App:
    """A Bolt app whose listeners only touch the database and the outbox.

    `process_before_response` runs each listener to its `ack()` in the request thread (no polling
    executor); work that must call Slack right away (opening a modal) runs as a lazy listener.
    Authorisation is a local function, so no request ever waits on `auth.test`.
    """
    token = runtime.settings.slack_bot_token

    def authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

    app = App(
        client=client,
        authorize=authorize,
        signing_secret=runtime.settings.slack_signing_secret or "socket-mode",
        request_verification_enabled=not socket_mode,
        token_verification_enabled=False,
        process_before_response=True,
        logger=logging.getLogger("handoff_bot.bolt"),
    )
    register_listeners(app, runtime)

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.exception("unhandled error in a Slack listener (%s)", body.get("type"), exc_info=error)

    return app
