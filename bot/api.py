"""The intake API (SPEC §6): FastAPI, bearer tokens, status codes as the contract says."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any, TypeVar

from anyio import to_thread
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.runtime import Runtime
from handoffs.intake import IntakeRejected, NoRoute
from handoffs.lifecycle import Action, Actor, Refused
from handoffs.lifecycle import Request as ActionRequest
from handoffs.model import USER_ID_PATTERN, Handoff, HandoffIn, InputModel, Status, parse_ref
from handoffs.ports import IdempotencyConflict
from handoffs.public import event_json, handoff_json, jsonable
from handoffs.service import NotFound
from handoffs.webhooks import WEBHOOK
from storage.outbox import OutboxStore
from storage.tables import OutboxRow

MAX_BODY_BYTES = 256 * 1024
MAX_PAGE = 200
DEFAULT_PAGE = 50
# `?status=&owner=&limit=`, as SPEC §6 writes the list URL (and as a client filling that template sends it): an
# empty parameter means the parameter is not given.
BLANK_IS_ABSENT = BeforeValidator(lambda value: None if value == "" else value)
MAX_ID = 2**63 - 1  # a handoff id is a signed 64-bit integer in both databases
HEALTH_STATEMENT_TIMEOUT_SECONDS = 2.0  # a load balancer's probe gives up after a few seconds: answer before it
Body = TypeVar("Body", bound=BaseModel)

log = logging.getLogger("handoff_bot.api")

_REFUSAL_STATUS = {
    "not_allowed": 403,
    "missing_argument": 422,
    "bad_argument": 422,
    "bad_outcome": 422,
    "busy": 503,
}


class OutcomeIn(InputModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    outcome: str = Field(min_length=1, max_length=80)
    note: str | None = Field(default=None, max_length=2000)


class Submitted(BaseModel):
    id: int
    ref: str
    status: Status
    owner: str | None
    queue: str | None
    channel: str | None
    review_reasons: list[str]
    duplicate_of: str | None


def delivery_json(row: OutboxRow) -> dict[str, Any]:
    """One outbox row of a handoff: a Slack write, or a webhook (which also has its delivery id, event, url)."""
    webhook = row.kind == WEBHOOK
    payload = row.payload or {}
    return {
        "id": row.id, "kind": row.kind,
        "delivery": payload.get("delivery") if webhook else None,
        "event": payload.get("event") if webhook else None,
        "url": row.target if webhook else None,
        "state": row.state, "attempts": row.attempts, "last_error": row.last_error,
        "created_at": jsonable(row.created_at), "done_at": jsonable(row.done_at),
    }


def _submitted(handoff: Handoff, duplicate: bool) -> dict[str, Any]:
    """The `Submitted` answer, built as the plain dict it serialises to (this runs on every intake)."""
    return {
        "id": handoff.id, "ref": handoff.ref, "status": handoff.status.value, "owner": handoff.owner,
        "queue": handoff.queue, "channel": handoff.channel, "review_reasons": list(handoff.review_reasons),
        "duplicate_of": handoff.ref if duplicate else None,
    }


def _is_json(content_type: str | None) -> bool:
    """`application/json` or `application/…+json`, parameters allowed (what FastAPI accepts as a JSON body)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _json_body(model: type[Body], body: bytes, content_type: str | None) -> Body | JSONResponse:
    """The validated body, or the 422 that names what is wrong with it (also a body json cannot read at all:
    nested too deeply, not UTF-8, for which FastAPI's own parsing answers a bare 400)."""
    if not _is_json(content_type):
        return JSONResponse({"detail": [{"loc": ["body"], "msg": "the body must be JSON (Content-Type: "
                                         "application/json)", "type": "content_type"}]}, 422)
    try:
        return model.model_validate_json(body)
    except ValidationError as invalid:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in invalid.errors()]  # as FastAPI places them
        return JSONResponse({"detail": _validation_errors(errors)}, 422)


async def _caller_and_body(request: Request, model: type[Body]) -> tuple[Actor, Body] | JSONResponse:
    """The API client (its token checked first) and its validated JSON body, or the 401 or 422 to answer."""
    name = _bearer_name(request)
    if name is None:
        return _unauthorized()
    body = _json_body(model, await request.body(), request.headers.get("content-type"))
    return body if isinstance(body, JSONResponse) else (Actor.system(name), body)


# The POST routes read their JSON bodies themselves (see `submit`); the OpenAPI document still shows them.
_READ_BODIES: dict[str, type[BaseModel]] = {"/api/handoffs": HandoffIn, "/api/handoffs/{ref}/outcome": OutcomeIn}
_BEARER = "bearerToken"
_BEARER_SCHEME = {"type": "http", "scheme": "bearer", "description": "a token of HANDOFF_API_TOKENS"}
_UNAUTHORIZED_ANSWER = {
    "description": "missing or invalid bearer token",
    "headers": {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
}
_Answers = dict[int | str, dict[str, Any]]  # FastAPI's `responses`
_NOT_FOUND: _Answers = {404: {"description": "no such handoff"}}
_TOO_LARGE: _Answers = {413: {"description": f"the body is larger than {MAX_BODY_BYTES // 1024} KiB"}}
_FIELD_ERRORS: _Answers = {422: {"description": "a field breaks a rule: each error names it (`loc`)"}}


def _complete_openapi(api: FastAPI) -> None:
    """Finish the OpenAPI document where the routes read requests themselves: each model of `_READ_BODIES` as
    its route's body, and the bearer token (with its 401) on every route under /api."""
    generate = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema:
            return api.openapi_schema
        document = generate()
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for path, model in _READ_BODIES.items():
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
            document["paths"][path]["post"]["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
        components["securitySchemes"] = {_BEARER: _BEARER_SCHEME}
        for path, operations in document["paths"].items():
            for operation in operations.values() if path.startswith(_API_PREFIX) else ():
                operation["security"] = [{_BEARER: []}]
                operation["responses"]["401"] = _UNAUTHORIZED_ANSWER
        return document

    api.openapi = openapi  # type: ignore[method-assign]


class BodyLimit:
    """Answer 401 to an API request without a valid token, and 413 to a body larger than the limit (declared or
    streamed), before reading any of the body: nobody waits on a body from a client it will not serve."""

    def __init__(self, app: ASGIApp, tokens: dict[str, str], limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.tokens = tokens
        self.limit = limit

    def _authorized(self, scope: Scope) -> bool:
        return _name_of(self.tokens, Headers(scope=scope).get("authorization")) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(_API_PREFIX) and not self._authorized(scope):
            await _answer(_unauthorized(), send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        # A streamed (chunked) body is read here, up to the limit, before the app sees any of it: an error raised
        # while the app itself reads would come out as FastAPI's 400 "error parsing the body", not a 413.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            if received > self.limit:
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for a disconnect, as the server would
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await _answer(JSONResponse({"detail": f"request body is larger than {self.limit // 1024} KiB"}, 413), send)


async def _answer(response: Response, send: Send) -> None:
    await response({"type": "http"}, _empty_receive, send)


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


_UNAUTHORIZED = "missing or invalid bearer token"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _unauthorized() -> JSONResponse:
    return JSONResponse({"detail": _UNAUTHORIZED}, 401, headers=_CHALLENGE)


_API_PREFIX = "/api/"  # every route under it takes the bearer token


def _bearer_name(request: Request) -> str | None:
    return _name_of(request.app.state.tokens, request.headers.get("authorization"))


def _name_of(tokens: dict[str, str], authorization: str | None) -> str | None:
    """The API client an `Authorization: Bearer <token>` header names; None without a valid one."""
    scheme, _, token = (authorization or "").partition(" ")
    return _token_name(tokens, token.strip()) if scheme.lower() == "bearer" else None


async def api_actor(request: Request) -> Actor:
    """The API client, named by its token in HANDOFF_API_TOKENS; 401 otherwise. (The header is read here, not
    declared: the OpenAPI document shows it once, as the security scheme, see `_complete_openapi`.)"""
    name = _bearer_name(request)
    if name is None:
        raise HTTPException(401, _UNAUTHORIZED, headers=_CHALLENGE)
    return Actor.system(name)


ApiActor = Annotated[Actor, Depends(api_actor)]


def _validation_errors(errors: list[Any]) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]


def create_api(runtime: Runtime, *, outbox: OutboxStore) -> FastAPI:
    api = FastAPI(title="handoff-bot", version="0.1.0", description="Intake API for owned, tracked handoffs.")
    api.state.tokens = dict(runtime.settings.api_tokens)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI parses a JSON body before it runs the token check: without a valid token, say only that.
        if request.url.path.startswith(_API_PREFIX) and _bearer_name(request) is None:
            return _unauthorized()
        return JSONResponse({"detail": _validation_errors(list(error.errors()))}, 422)

    @api.post("/api/handoffs", status_code=201, response_model=Submitted,
              responses={200: {"description": "an idempotent repeat or an open duplicate: the same body"},
                         409: {"description": "the same source.system and external_id with other content"},
                         **_TOO_LARGE, **_FIELD_ERRORS, 503: {"description": "no route reaches an owner or a queue"}})
    async def submit(request: Request) -> Response:
        # The body is read and validated here, not by FastAPI's dependency machinery: on the busiest route
        # that machinery cost more CPU than the validation itself (the OpenAPI document still shows
        # HandoffIn as the body, see `_complete_openapi`). The token is checked before the body is read.
        read = await _caller_and_body(request, HandoffIn)
        if isinstance(read, JSONResponse):
            return read
        actor, payload = read
        try:
            result = await to_thread.run_sync(lambda: runtime.service.submit(payload, actor=actor.id))
            runtime.notify()
        except IntakeRejected as rejected:
            return JSONResponse({"detail": [e.as_dict() for e in rejected.errors]}, 422)
        except IdempotencyConflict as conflict:
            return JSONResponse({"detail": str(conflict), "existing": f"H-{conflict.existing_id}"}, 409)
        except NoRoute as no_route:
            return JSONResponse({"detail": str(no_route)}, 503)
        body = _submitted(result.handoff, duplicate=result.result == "duplicate")
        return JSONResponse(body, 201 if result.is_new else 200)

    @api.get("/api/handoffs/{ref}", responses=_NOT_FOUND)
    async def show(ref: str, actor: ApiActor) -> dict[str, Any]:
        handoff_id = _id_or_404(ref)

        def load() -> dict[str, Any]:
            handoff = runtime.service.get(handoff_id)
            body = handoff_json(handoff)
            body["events"] = [event_json(e) for e in runtime.repo.events(handoff_id)]
            body["deliveries"] = [delivery_json(row) for row in runtime.repo.outbox_for(handoff_id)]
            return body

        return await _in_thread(load)

    @api.get("/api/handoffs")
    async def list_handoffs(
        actor: ApiActor,
        status: Annotated[Status | None, BLANK_IS_ABSENT] = None,
        owner: Annotated[Annotated[str, Field(pattern=USER_ID_PATTERN)] | None, BLANK_IS_ABSENT] = None,
        stalled: Annotated[bool | None, BLANK_IS_ABSENT, Query(description="only stalled ones (default false)")] = None,
        limit: Annotated[Annotated[int, Field(ge=1, le=MAX_PAGE)] | None, BLANK_IS_ABSENT,
                         Query(description=f"items a page (default {DEFAULT_PAGE})")] = None,
        cursor: Annotated[Annotated[int, Field(ge=1, le=MAX_ID)] | None, BLANK_IS_ABSENT] = None,
    ) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            page = runtime.repo.page(status=status, owner=owner, stalled_at=runtime.clock() if stalled else None,
                                     limit=limit or DEFAULT_PAGE, cursor=cursor)
            return {"items": [handoff_json(h) for h in page.items],
                    "next_cursor": str(page.next_cursor) if page.next_cursor else None}

        return await to_thread.run_sync(load)

    @api.post("/api/handoffs/{ref}/outcome",
              responses={**_NOT_FOUND, 409: {"description": "not in a status it can be closed from, or it needs "
                                                             "approval first"},
                         **_TOO_LARGE, **_FIELD_ERRORS,
                         503: {"description": "it is being changed by another request right now: try again"}})
    async def outcome(ref: str, request: Request) -> Response:
        # Read here like the intake body, for the same answers: the token first, then the body (see `submit`).
        read = await _caller_and_body(request, OutcomeIn)
        if isinstance(read, JSONResponse):
            return read
        actor, body = read
        handoff_id = _id_or_404(ref)
        close = ActionRequest(Action.close, outcome=body.outcome, note=body.note)
        try:
            acted = await _in_thread(lambda: runtime.service.act(handoff_id, close, actor))
        except Refused as refused:
            return _refusal(refused)
        runtime.notify()
        return JSONResponse(handoff_json(acted.handoff), 200)

    @api.get("/healthz", responses={503: {"description": "the database cannot be reached or read"}})
    async def healthz() -> JSONResponse:
        """200 while the database answers; failed deliveries show in the details without failing health."""

        def check() -> dict[str, Any]:
            if not runtime.db.ping():
                return {"ok": False, "database": "unreachable"}
            try:
                health = outbox.health(statement_timeout=HEALTH_STATEMENT_TIMEOUT_SECONDS)
            except SQLAlchemyError as error:  # it connects, but cannot read (a dropped table or schema, a lock)
                reason = f"cannot read the outbox: {_one_line(error)}"
                log.warning("health check failed: %s", reason)
                return {"ok": False, "database": "failing", "error": reason}
            return {"ok": True, "database": "ok",
                    "outbox": {"pending": health.pending, "failed": health.failed,
                               "last_failure": health.last_failure}}

        body = await to_thread.run_sync(check)
        return JSONResponse(body, 200 if body["ok"] else 503)

    _complete_openapi(api)
    from bot.stats_api import mount_stats  # imported here: bot.stats_api imports this module
    mount_stats(api, runtime)
    return api


async def _in_thread(work: Any) -> Any:
    try:
        return await to_thread.run_sync(work)
    except NotFound as missing:
        raise HTTPException(404, str(missing)) from None


def _id_or_404(ref: str) -> int:
    handoff_id = parse_ref(ref)
    if handoff_id is None:
        raise HTTPException(404, f"{ref!r} is not a handoff reference (write H-42 or 42)")
    return handoff_id


def _one_line(error: SQLAlchemyError) -> str:
    """The database's own message, without the statement and parameters SQLAlchemy adds."""
    message = str(error.orig) if isinstance(error, DBAPIError) else str(error)
    return (message.strip().splitlines() or [type(error).__name__])[0]


def _token_name(tokens: dict[str, str], presented: str) -> str | None:
    found = None
    for token, name in tokens.items():
        if hmac.compare_digest(token.encode(), presented.encode()):
            found = name
    return found


def _refusal(refused: Refused) -> JSONResponse:
    status = _REFUSAL_STATUS.get(refused.code, 409)
    if status == 422:
        field = refused.details.get("field", "outcome")
        return JSONResponse({"detail": [{"loc": ["body", field], "msg": refused.reason, "type": refused.code}]}, 422)
    return JSONResponse({"detail": refused.reason, "code": refused.code}, status)


def with_body_limit(api: FastAPI) -> ASGIApp:
    """`api` behind BodyLimit, with the API tokens `create_api` gave it (none: an app without the intake API)."""
    return BodyLimit(api, getattr(api.state, "tokens", {}))
