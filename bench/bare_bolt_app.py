"""The baseline for bench/ack.py: a Bolt app that only acks the Claim button, served like the bot.

Same stack as `handoff-bot serve`: uvicorn, FastAPI, the bot's `/slack/events` adapter (Bolt dispatch in a
worker thread, `bot.slack.http.mount_slack`), the bot's body-limit wrapper, a sync Bolt `App` with
`process_before_response=True`, request signing checked, a local authorize function, start-up objects frozen
out of the cyclic GC. What it lacks is the bot's work: no database, no domain call, no outbox.

    PORT=3001 SLACK_SIGNING_SECRET=... python bench/bare_bolt_app.py
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from slack_bolt import Ack, App  # noqa: E402
from slack_bolt.authorization import AuthorizeResult  # noqa: E402
from slack_sdk import WebClient  # noqa: E402
from starlette.types import ASGIApp  # noqa: E402

from bot import ids  # noqa: E402
from bot.api import with_body_limit  # noqa: E402
from bot.server import freeze_startup_objects  # noqa: E402
from bot.slack.http import mount_slack  # noqa: E402


def create_bare_app(signing_secret: str, bot_token: str = "xoxb-bare") -> ASGIApp:
    def authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=bot_token)

    bolt = App(
        client=WebClient(token=bot_token, base_url="http://127.0.0.1:9/api/", retry_handlers=[]),
        authorize=authorize,
        signing_secret=signing_secret,
        token_verification_enabled=False,
        process_before_response=True,
        logger=logging.getLogger("bare.bolt"),
    )

    @bolt.action(ids.CLAIM)
    def claim(ack: Ack) -> None:
        ack()

    api = FastAPI()

    @api.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    mount_slack(api, bolt)
    return with_body_limit(api)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    secret = os.environ.get("SLACK_SIGNING_SECRET", "")
    if not secret:
        sys.exit("bare_bolt_app: set SLACK_SIGNING_SECRET")
    app = create_bare_app(secret)
    freeze_startup_objects()  # as `handoff-bot serve` does
    uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "3001")),
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
