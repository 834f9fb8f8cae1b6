"""The intake API's refusals over real HTTP: validation, size, authentication, unknown refs.

All of this is decided before storage, so one backend (SQLite) is enough; every test still checks that
nothing was stored. The storage-dependent behaviour runs on both backends in test_api_http.py.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from bot.runtime import Runtime
from handoffs.model import HandoffEdit
from tests.conftest import API_TOKEN, BACKENDS, LiveServer
from tests.factories import counts, lead, payload


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def client(live_server: LiveServer, auth_headers: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, headers=auth_headers, timeout=10) as http:
        yield http


@pytest.fixture
def anonymous(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=10) as http:
        yield http


def create(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/handoffs", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def show(client: httpx.Client, ref: str) -> dict[str, Any]:
    response = client.get(f"/api/handoffs/{ref}")
    assert response.status_code == 200, response.text
    return dict(response.json())


# --- bad input: the answer, and nothing stored ------------------------------------------------

BAD_BODIES = [
    pytest.param(payload(kind="lede"), ["body", "kind"], id="unknown-kind"),
    pytest.param(lead(facts={"company": "ACME"}), ["body", "facts", "contact"], id="missing-required-fact"),
    pytest.param(lead(intent="lunch"), ["body", "intent"], id="intent-not-allowed"),
    pytest.param(payload(confidence=1.01), ["body", "confidence"], id="confidence-above-1"),
    pytest.param(payload(confidence=-0.1), ["body", "confidence"], id="confidence-below-0"),
    pytest.param(payload(confidence="high"), ["body", "confidence"], id="confidence-not-a-number"),
    pytest.param(payload(urgency="asap"), ["body", "urgency"], id="bad-urgency"),
    pytest.param(payload(owner="@anna"), ["body", "owner"], id="owner-not-a-slack-id"),
    pytest.param(payload(owner="C0CHANNEL"), ["body", "owner"], id="owner-is-a-channel"),
    pytest.param(payload(approvers=["U0LEAD", "lead"]), ["body", "approvers", 1], id="approver-not-a-slack-id"),
    pytest.param(payload(due_at="2030-01-01T10:00:00"), ["body", "due_at"], id="due-at-without-offset"),
    pytest.param(payload(due_at="next friday"), ["body", "due_at"], id="due-at-not-a-date"),
    pytest.param(payload(due_at="9999-12-31T23:59:59-14:00"), ["body", "due_at"], id="due-at-past-year-9999-in-utc"),
    pytest.param(payload(due_at="0001-01-01T00:00:00+14:00"), ["body", "due_at"], id="due-at-before-year-1-in-utc"),
    pytest.param(payload(due_at="1999-12-31T23:59:59Z"), ["body", "due_at"], id="due-at-before-2000"),
    pytest.param(payload(due_at="3000-01-01T00:00:00Z"), ["body", "due_at"], id="due-at-after-2999"),
    pytest.param(payload(callback_url="http://hooks.example.com/x"), ["body", "callback_url"], id="http-callback"),
    pytest.param(payload(callback_url="ftp://127.0.0.1/x"), ["body", "callback_url"], id="ftp-callback"),
    pytest.param(payload(callback_url="https:///nohost"), ["body", "callback_url"], id="callback-without-host"),
    # URLs the webhook sender (httpx) could never call: each used to be accepted, then retried for a day
    pytest.param(payload(callback_url="https://example.com:abc/x"), ["body", "callback_url"], id="callback-port-text"),
    pytest.param(payload(callback_url="https://example.com:99999/x"), ["body", "callback_url"],
                 id="callback-port-out-of-range"),
    pytest.param(payload(callback_url="https://example.com:0/x"), ["body", "callback_url"], id="callback-port-0"),
    pytest.param(payload(callback_url="https://exa mple.com/x"), ["body", "callback_url"], id="callback-space"),
    pytest.param(payload(callback_url="https://a/\x7f"), ["body", "callback_url"], id="callback-control-char"),
    pytest.param(payload(callback_url="https://a.test/x\ty"), ["body", "callback_url"], id="callback-tab"),
    pytest.param(payload(callback_url="https://999.1.1.1/x"), ["body", "callback_url"], id="callback-bad-ipv4"),
    pytest.param(payload(source={"url": "https://evil.test\\@bank.test/"}), ["body", "source", "url"],
                 id="source-url-with-backslash"),  # a browser opens evil.test; urllib calls the host bank.test
    pytest.param(payload(titel="typo"), ["body", "titel"], id="unknown-top-level-field"),
    pytest.param(payload(source={"system": "x", "uri": "https://a.test"}), ["body", "source", "uri"],
                 id="unknown-nested-field"),
    pytest.param({"next_action": "n"}, ["body", "title"], id="missing-title"),
    pytest.param(payload(title="x" * 151), ["body", "title"], id="title-too-long"),
    pytest.param(payload(title="   "), ["body", "title"], id="blank-title"),
    pytest.param(payload(facts={"budget": 5000}), ["body", "facts", "budget"], id="fact-not-a-string"),
    # values of another JSON type used to be converted: true as confidence 1.0 (no review), a number as a Unix
    # time, "no" as false; and a title of zero-width characters was not blank
    pytest.param(payload(confidence=True), ["body", "confidence"], id="confidence-true"),
    pytest.param(payload(due_at=1900000000), ["body", "due_at"], id="due-at-a-number"),
    pytest.param(payload(requires_approval="no"), ["body", "requires_approval"], id="requires-approval-a-string"),
    pytest.param(payload(requires_approval=0), ["body", "requires_approval"], id="requires-approval-0"),
    pytest.param(payload(title="\u200b\u200c\u2060"), ["body", "title"], id="title-of-zero-width-characters"),
    pytest.param(payload(next_action="\ufeff"), ["body", "next_action"], id="next-action-a-bom"),
    pytest.param(payload(risk_flags=["\u200b"]), ["body", "risk_flags", 0], id="invisible-list-item"),
]


def test_bad_input_is_422_naming_the_field_and_stores_nothing(client: httpx.Client, runtime: Runtime) -> None:
    create(client, payload())  # something already stored, so "nothing changed" is not "nothing there"
    problems = []
    for case in BAD_BODIES:
        (body, loc), name = case.values, case.id
        before = counts(runtime)
        response = client.post("/api/handoffs", json=body)
        errors = response.json()["detail"] if response.status_code == 422 else []
        if response.status_code != 422 or loc not in [error["loc"] for error in errors]:
            problems.append(f"{name}: {response.status_code} {response.text}")
        elif not all(error["msg"] for error in errors):
            problems.append(f"{name}: an error without a message: {errors}")
        if counts(runtime) != before:
            problems.append(f"{name}: stored something")
    assert problems == []


def test_due_times_and_callback_urls_that_can_be_kept_and_called_are_accepted(client: httpx.Client) -> None:
    for due_at in ("2000-01-01T00:00:00Z", "2999-12-31T23:59:59+14:00", "2000-01-01T14:00:00+14:00"):
        create(client, payload(owner="UOWNER", due_at=due_at))
    for url in ("https://hooks.example.com:8443/h?run=1", "https://exämple.com/x", "http://[::1]:9000/x"):
        create(client, payload(callback_url=url))


def test_edit_refuses_the_same_due_times_and_nul() -> None:
    """HandoffEdit (the Edit modal) shares the rules: a due time UTC cannot hold, a NUL in its text."""
    for value in ({"due_at": "9999-12-31T23:59:59-14:00"}, {"due_at": "0001-01-01T00:00:00+14:00"},
                  {"title": "a\u0000b"}, {"summary": "\u0000"}):
        with pytest.raises(ValidationError) as refused:
            HandoffEdit.model_validate(value)
        assert refused.value.errors()[0]["loc"] == (next(iter(value)),)


NUL = "\u0000"  # PostgreSQL text cannot hold it, SQLite can: both must answer the same 422
NUL_BODIES = [
    pytest.param(payload(title=f"Call{NUL}back"), ["body", "title"], id="title"),
    pytest.param(payload(next_action=NUL), ["body", "next_action"], id="next-action"),
    pytest.param(payload(summary=f"a{NUL}"), ["body", "summary"], id="summary"),
    pytest.param(payload(draft=f"a{NUL}"), ["body", "draft"], id="draft"),
    pytest.param(payload(definition_of_done=f"a{NUL}"), ["body", "definition_of_done"], id="definition-of-done"),
    pytest.param(payload(created_by=f"bot{NUL}"), ["body", "created_by"], id="created-by"),
    pytest.param(payload(facts={"budget": f"5{NUL}"}), ["body", "facts"], id="fact-value"),
    pytest.param(payload(facts={f"bud{NUL}get": "5"}), ["body", "facts"], id="fact-key"),
    pytest.param(payload(missing_info=["ok", f"a{NUL}"]), ["body", "missing_info"], id="list-item"),
    pytest.param(payload(external_id=f"e{NUL}", source={"system": "n8n"}), ["body", "external_id"], id="external-id"),
    pytest.param(payload(source={"system": "n8n", "label": f"l{NUL}"}), ["body", "source", "label"],
                 id="source-label"),
    pytest.param(payload(source={"system": f"n8n{NUL}"}), ["body", "source", "system"], id="source-system"),
]


@pytest.mark.parametrize("backend", BACKENDS)  # overrides this module's SQLite-only `backend` fixture
def test_a_nul_character_in_any_text_is_422_naming_the_field_on_both_backends(client: httpx.Client,
                                                                               runtime: Runtime) -> None:
    ref = create(client, payload(owner="UOWNER"))["ref"]
    before, rows = show(client, ref), counts(runtime)
    problems = []
    for case in NUL_BODIES:
        (body, loc), name = case.values, case.id
        response = client.post("/api/handoffs", json=body)
        locs = [error["loc"] for error in response.json()["detail"]] if response.status_code == 422 else []
        if loc not in locs:
            problems.append(f"{name}: {response.status_code} {response.text}")
    for outcome in ({"outcome": "done", "note": f"x{NUL}y"}, {"outcome": f"done{NUL}"}):
        response = client.post(f"/api/handoffs/{ref}/outcome", json=outcome)
        if response.status_code != 422 or response.json()["detail"][0]["loc"][:1] != ["body"]:
            problems.append(f"outcome {outcome}: {response.status_code} {response.text}")
    assert problems == []
    assert show(client, ref) == before
    assert counts(runtime) == rows


def test_a_body_that_is_not_a_json_object_is_422(client: httpx.Client, runtime: Runtime) -> None:
    before = counts(runtime)
    for raw in (b'{"title": "t", "next_action": ', b"title=t&next_action=n", b"", b'["title", "next_action"]',
                b"null", b'{"title": "t", "next_action": "n", "confidence": NaN}'):
        response = client.post("/api/handoffs", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (raw, response.text)
        assert response.json()["detail"][0]["loc"][0] == "body", raw
    plain = {"Content-Type": "text/plain"}
    not_json = client.post("/api/handoffs", content=json.dumps(payload()).encode(), headers=plain)
    assert not_json.status_code == 422 and not_json.json()["detail"][0]["loc"] == ["body"], not_json.text
    assert counts(runtime) == before


def full_body() -> bytes:
    """Every field at or near its limit: big, valid, and still under the cap."""
    body = json.dumps(payload(summary="x" * 4000, draft="y" * 9000, facts={f"k{i}": "z" * 2000 for i in range(30)},
                              missing_info=["m" * 1000] * 20, risk_flags=["r" * 1000] * 20,
                              constraints=["c" * 1000] * 20, decisions=["d" * 1000] * 20,
                              already_done=["a" * 1000] * 20)).encode()
    assert 128 * 1024 < len(body) < 256 * 1024
    return body


def big_body() -> bytes:
    return full_body()[:-1] + b', "padding": "' + b"p" * (256 * 1024) + b'"}'


def test_a_body_over_256_kib_is_413(client: httpx.Client, runtime: Runtime) -> None:
    before = counts(runtime)
    response = client.post("/api/handoffs", content=big_body(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "256 KiB" in response.json()["detail"]
    assert counts(runtime) == before
    # the same fields without the padding are read and stored
    ok = client.post("/api/handoffs", content=full_body(), headers={"Content-Type": "application/json"})
    assert ok.status_code == 201, ok.text


def test_a_chunked_body_over_256_kib_is_413_too(client: httpx.Client, runtime: Runtime) -> None:
    data = big_body()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server has to count
        for start in range(0, len(data), 16 * 1024):
            yield data[start:start + 16 * 1024]

    before = counts(runtime)
    response = client.post("/api/handoffs", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert counts(runtime) == before


def test_without_a_valid_token_it_is_401_and_nothing_is_stored(anonymous: httpx.Client, runtime: Runtime) -> None:
    before = counts(runtime)
    for authorization in [None, "", "Bearer", "Bearer wrong-token-123", f"Basic {API_TOKEN}", f"Bearer {API_TOKEN}x",
                          API_TOKEN, f"Bearer {API_TOKEN[:-1]}"]:
        headers = {} if authorization is None else {"Authorization": authorization}
        response = anonymous.post("/api/handoffs", json=payload(), headers=headers)
        assert response.status_code == 401, authorization
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert counts(runtime) == before
    lowercase = anonymous.post("/api/handoffs", json=payload(), headers={"Authorization": f"bearer {API_TOKEN}"})
    assert lowercase.status_code == 201


def test_without_a_valid_token_even_a_malformed_or_invalid_body_is_401(anonymous: httpx.Client,
                                                                       runtime: Runtime) -> None:
    before = counts(runtime)
    malformed = anonymous.post("/api/handoffs", content=b"{not json", headers={"Content-Type": "application/json"})
    invalid = anonymous.post("/api/handoffs", json={"titel": 1}, headers={"Authorization": "Bearer nope-nope"})
    assert (malformed.status_code, invalid.status_code) == (401, 401)
    assert counts(runtime) == before


def _first_answer(server: LiveServer, request_head: bytes) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body the server answers within 3 seconds to a request that declares a body and
    sends only its first byte; status 0 when no answer came."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
        connection.sendall(request_head + b"{")
        connection.settimeout(3)
        answer = http.client.HTTPResponse(connection)
        try:
            answer.begin()
            return answer.status, {name.lower(): value for name, value in answer.getheaders()}, answer.read()
        except TimeoutError:
            return 0, {}, b""


@pytest.mark.parametrize("authorization", ["", "Authorization: Bearer wrong-token-123\r\n",
                                           f"Authorization: Basic {API_TOKEN}\r\n"],
                         ids=["no-token", "wrong-token", "not-bearer"])
@pytest.mark.parametrize("path", ["/api/handoffs", "/api/handoffs/H-1/outcome"])
def test_without_a_valid_token_the_401_comes_before_the_body_is_read(live_server: LiveServer, runtime: Runtime,
                                                                     authorization: str, path: str) -> None:
    """A client without a token that declares a body and sends only its first byte is answered at once (it used to
    wait, unanswered, for a body that never came), with the same answer as any other unauthenticated request."""
    before = counts(runtime)
    head = (f"POST {path} HTTP/1.1\r\nHost: localhost\r\n{authorization}Content-Type: application/json\r\n"
            "Content-Length: 200\r\n\r\n").encode()
    status, headers, body = _first_answer(live_server, head)
    assert (status, headers.get("www-authenticate")) == (401, "Bearer"), (status, headers)
    assert json.loads(body) == {"detail": "missing or invalid bearer token"}
    assert counts(runtime) == before


def test_with_a_valid_token_a_body_declared_over_256_kib_is_still_413(live_server: LiveServer) -> None:
    head = (f"POST /api/handoffs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {API_TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {256 * 1024 + 1}\r\n\r\n").encode()
    assert _first_answer(live_server, head)[0] == 413  # answered unread, as before


def test_every_api_route_needs_the_token(anonymous: httpx.Client, client: httpx.Client) -> None:
    ref = create(client, payload(owner="UOWNER"))["ref"]
    assert anonymous.get(f"/api/handoffs/{ref}").status_code == 401
    assert anonymous.get("/api/handoffs").status_code == 401
    assert anonymous.post(f"/api/handoffs/{ref}/outcome", json={"outcome": "done"}).status_code == 401
    assert show(client, ref)["status"] == "claimed"


def test_an_unknown_ref_is_404(client: httpx.Client) -> None:
    create(client, payload())
    for ref in ["H-99999", "99999", "abc", "H-0", "H--1", "H-1x", "9" * 30]:
        response = client.get(f"/api/handoffs/{ref}")
        assert response.status_code == 404, ref
        assert response.json()["detail"]


def test_limit_and_other_list_parameters_are_bounded(client: httpx.Client) -> None:
    create(client, payload())
    bad: list[dict[str, Any]] = [{"limit": 0}, {"limit": 201}, {"limit": "ten"}, {"status": "done"},
                                 {"owner": "anna"}, {"cursor": 0}, {"stalled": "maybe"}]
    for params in bad:
        response = client.get("/api/handoffs", params=params)
        assert response.status_code == 422, params
        assert response.json()["detail"][0]["loc"][0] == "query"
    assert client.get("/api/handoffs", params={"limit": 1}).status_code == 200
    assert client.get("/api/handoffs", params={"limit": 200}).status_code == 200


@pytest.mark.parametrize("backend", BACKENDS)  # a number past 64 bits used to reach the database: 500
def test_cursors_and_refs_beyond_a_64_bit_id_are_refused_on_both_backends(client: httpx.Client,
                                                                          runtime: Runtime) -> None:
    ref = create(client, payload(owner="UOWNER"))["ref"]
    before, rows = show(client, ref), counts(runtime)
    for cursor in ("99999999999999999999", str(2**63)):
        response = client.get("/api/handoffs", params={"cursor": cursor})
        assert response.status_code == 422, (cursor, response.text)
        assert response.json()["detail"][0]["loc"] == ["query", "cursor"]
    largest = client.get("/api/handoffs", params={"cursor": str(2**63 - 1)})
    assert largest.status_code == 200 and [h["ref"] for h in largest.json()["items"]] == [ref]
    for missing in ("H-99999999999999999999", "H-999999999999999999", "9" * 19):
        assert client.get(f"/api/handoffs/{missing}").status_code == 404, missing
        assert client.post(f"/api/handoffs/{missing}/outcome", json={"outcome": "done"}).status_code == 404, missing
    assert show(client, ref) == before
    assert counts(runtime) == rows


def test_outcome_body_errors_are_422_and_change_nothing(client: httpx.Client, runtime: Runtime) -> None:
    ref = create(client, payload(owner="UOWNER"))["ref"]
    before, rows = show(client, ref), counts(runtime)
    for body in ({}, {"outcome": ""}, {"outcome": "done", "mood": "happy"}, {"outcome": "done", "note": "n" * 2001}):
        response = client.post(f"/api/handoffs/{ref}/outcome", json=body)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"][0] == "body"
    assert show(client, ref) == before
    assert counts(runtime) == rows


# Bodies json cannot read at all: nested deeper than its parser goes, and not UTF-8.
UNREADABLE_BODIES = [pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-too-deep"),
                     pytest.param(b'{"outcome": "done", "note": "\xff\xfe"}', id="not-utf8")]


@pytest.mark.parametrize("raw", UNREADABLE_BODIES)
def test_an_outcome_body_json_cannot_read_is_the_same_422_as_on_intake(client: httpx.Client, runtime: Runtime,
                                                                       raw: bytes) -> None:
    """It was FastAPI's 400 "There was an error parsing the body", with no field named."""
    ref = create(client, payload(owner="UOWNER"))["ref"]
    before, rows = show(client, ref), counts(runtime)
    json_headers = {"Content-Type": "application/json"}
    response = client.post(f"/api/handoffs/{ref}/outcome", content=raw, headers=json_headers)
    intake = client.post("/api/handoffs", content=raw, headers=json_headers)
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["body"]]
    assert response.json() == intake.json()
    assert show(client, ref) == before
    assert counts(runtime) == rows


@pytest.mark.parametrize("raw", [*UNREADABLE_BODIES, pytest.param(b'{"outcome": ""}', id="invalid")])
def test_outcome_without_a_valid_token_is_401_whatever_the_body(anonymous: httpx.Client, client: httpx.Client,
                                                               runtime: Runtime, raw: bytes) -> None:
    ref = create(client, payload(owner="UOWNER"))["ref"]
    rows = counts(runtime)
    for ref_or_not in (ref, "nope"):
        response = anonymous.post(f"/api/handoffs/{ref_or_not}/outcome", content=raw,
                                  headers={"Content-Type": "application/json"})
        assert (response.status_code, response.headers.get("WWW-Authenticate")) == (401, "Bearer"), ref_or_not
        assert response.json() == {"detail": "missing or invalid bearer token"}
    assert counts(runtime) == rows


def test_outcome_for_an_unknown_handoff_is_404(client: httpx.Client, runtime: Runtime) -> None:
    before = counts(runtime)
    assert client.post("/api/handoffs/H-4242/outcome", json={"outcome": "done"}).status_code == 404
    assert client.post("/api/handoffs/nope/outcome", json={"outcome": "done"}).status_code == 404
    assert counts(runtime) == before


# --- health and the published contract --------------------------------------------------------


def test_healthz_and_the_openapi_document(anonymous: httpx.Client) -> None:
    response = anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json()["ok"] is True and response.json()["database"] == "ok"
    response = anonymous.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"post", "get"} <= set(paths["/api/handoffs"])
    assert "get" in paths["/api/handoffs/{ref}"]
    assert "post" in paths["/api/handoffs/{ref}/outcome"]
    assert "get" in paths["/healthz"]
    schemas = response.json()["components"]["schemas"]
    assert {"HandoffIn", "Source"} <= set(schemas)
    body = paths["/api/handoffs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/HandoffIn"}
    assert schemas["HandoffIn"]["properties"]["source"]["anyOf"][0] == {"$ref": "#/components/schemas/Source"}


# SPEC §6, as a client generated from the document (n8n, Zapier, an agent) must learn it: what each route answers.
DOCUMENTED_ANSWERS = {
    ("post", "/api/handoffs"): {"200", "201", "401", "409", "413", "422"},
    ("get", "/api/handoffs/{ref}"): {"200", "401", "404"},
    ("get", "/api/handoffs"): {"200", "401", "422"},
    ("post", "/api/handoffs/{ref}/outcome"): {"200", "401", "404", "409", "413", "422"},
    ("get", "/api/stats"): {"200", "401", "422"},
    ("get", "/healthz"): {"200", "503"},
}


def test_the_openapi_document_declares_the_bearer_token_and_each_routes_answers(anonymous: httpx.Client) -> None:
    """There was no security scheme, `POST /api/handoffs` documented no Authorization at all, the outcome route
    left out 401, 404 and 409, and /healthz its 503."""
    document = anonymous.get("/openapi.json").json()
    [(scheme_name, scheme)] = document["components"]["securitySchemes"].items()
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    operations = {(method, path): operation for path, methods in document["paths"].items()
                  for method, operation in methods.items()}
    assert set(operations) == set(DOCUMENTED_ANSWERS)
    for (method, path), operation in operations.items():
        assert DOCUMENTED_ANSWERS[method, path] <= set(operation["responses"]), (method, path)
        security: list[dict[str, list[str]]] | None = [{scheme_name: []}] if path.startswith("/api/") else None
        assert operation.get("security") == security, (method, path)
        assert "authorization" not in {p["name"].lower() for p in operation.get("parameters", [])}, (method, path)
        if security:
            assert operation["responses"]["401"]["headers"]["WWW-Authenticate"], (method, path)
