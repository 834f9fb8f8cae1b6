"""The HTTP server: one ASGI app carrying the intake API (and the Slack endpoint)."""

from __future__ import annotations

import logging

import uvicorn
from starlette.types import ASGIApp

from bot.api import create_api, with_body_limit
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings

log = logging.getLogger("handoff_bot.server")


def create_asgi_app(runtime: Runtime) -> ASGIApp:
    return with_body_limit(create_api(runtime))


def run(settings: Settings, *, socket_mode: bool = False) -> None:
    runtime = build_runtime(settings)
    app = create_asgi_app(runtime)
    log.info("serving on http://%s:%s (database %s)", settings.host, settings.port, settings.database_url.split(":")[0])
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    finally:
        runtime.close()
