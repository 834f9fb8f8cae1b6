"""Intake throughput and latency: concurrent keep-alive clients POSTing /api/handoffs to the real server.

    .venv/bin/python bench/intake.py [--clients 16] [--seconds 10] [--backend sqlite|postgres|both] [--workers 2]

The server is `handoff-bot serve` in a subprocess, on a fresh SQLite file or a PostgreSQL database created
(and dropped) for the run. Every request carries a distinct, realistic body (unique titles, so dedupe never
hits). The clients are cheap on purpose (asyncio, raw sockets, pre-built HTTP/1.1 requests) so that they
leave the server the CPU; `--client threads` uses http.client in threads instead, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import resource
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import BENCH_TOKEN, Client, Server, machine_line, percentile, pg_base_url, postgres_database, verdict

TARGET_CREATED_PER_S = 400.0
TARGET_P99_MS = 60.0
DEFAULT_WORKERS = 2

COMPANIES = ["ACME GmbH", "Globex", "Initech", "Umbrella Retail", "Stark Logistics", "Wayne Foods", "Hooli",
             "Vandelay Imports", "Soylent AG", "Tyrell Systems", "Cyberdyne", "Wonka Industries"]
TOPICS = ["renewal pricing", "onboarding call", "data export", "invoice dispute", "SSO rollout", "API limits",
          "security review", "contract redlines", "pilot extension", "churn risk"]
OWNERS = [f"U0BENCH{i:03d}" for i in range(40)]


def _templates(run: str) -> list[str]:
    """JSON bodies with a `@N@` marker; each request substitutes its own number (cheap, unique)."""
    rng = random.Random(7)
    bodies: list[str] = []
    for index in range(64):
        company = rng.choice(COMPANIES)
        topic = rng.choice(TOPICS)
        shape = index % 8
        body: dict[str, object] = {
            "title": f"{company}: follow up on {topic} (bench {run} #@N@)",
            "next_action": f"Call the {company} contact about {topic} and confirm the next step in the CRM",
            "summary": (f"Call summary: {company} asked about {topic}. They are comparing two vendors and want "
                        f"an answer before the end of the quarter. Tone was positive; budget is approved in "
                        f"principle but procurement needs the security questionnaire first. Ref @N@."),
            "facts": {"customer": company, "account": f"ACC-{rng.randint(1000, 9999)}",
                      "region": rng.choice(["EMEA", "NA", "APAC"]), "arr": f"{rng.randint(5, 400)}k EUR"},
            "urgency": rng.choice(["low", "normal", "normal", "normal", "high", "urgent"]),
            "confidence": round(rng.uniform(0.72, 0.99), 2),
            "already_done": ["Sent the recap email", "Logged the call in the CRM"],
            "constraints": ["Do not offer more than 10% discount"],
            "definition_of_done": "Customer has a written answer and the CRM stage is updated",
            "source": {"system": "n8n", "url": f"https://crm.example.com/deals/{rng.randint(1, 99999)}?n=@N@",
                       "label": "CRM deal"},
            "created_by": "call-summariser",
        }
        if shape in (1, 5):
            body["external_id"] = f"bench-{run}-@N@"
        if shape == 2:
            body["kind"] = "lead"
            body["facts"] = {"company": company, "contact": "Jane Doe", "source": "webinar"}
        if shape == 3:
            body["kind"] = "reply"
            body["draft"] = (f"Hi Jane,\n\nthanks for the call today. About {topic}: we can confirm the "
                             f"terms we discussed and will send the paperwork this week.\n\nBest,\nAlex")
        if shape == 4:
            body["owner"] = rng.choice(OWNERS)
        if shape == 6:
            body["confidence"] = 0.55
            body["missing_info"] = ["Decision maker's name", "Budget owner"]
            body["risk_flags"] = ["Mentions a competitor"]
        bodies.append(json.dumps(body))
    return bodies


class Requests:
    """Pre-built HTTP/1.1 POST requests, numbered so that every title and external id is unique."""

    def __init__(self, port: int, run: str) -> None:
        self.templates = [t.encode() for t in _templates(run)]
        self.head = (f"POST /api/handoffs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     f"Authorization: Bearer {BENCH_TOKEN}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: ").encode()
        self.counter = 0

    def next(self) -> tuple[bytes, bytes]:
        """(full request, body) — the body is returned for the http.client mode."""
        self.counter += 1
        number = str(self.counter).encode()
        body = self.templates[self.counter % len(self.templates)].replace(b"@N@", number)
        return self.head + str(len(body)).encode() + b"\r\n\r\n" + body, body


@dataclass
class Samples:
    """One tuple per finished request: (started, finished, HTTP status or 0 for a transport error)."""

    records: list[tuple[float, float, int]] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)


async def _async_client(port: int, requests: Requests, samples: Samples, stop_at: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    perf = time.perf_counter
    record = samples.records.append
    try:
        while True:
            started = perf()
            if started >= stop_at:
                break
            request, _ = requests.next()
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                lower = head.lower()
                at = lower.find(b"content-length:")
                length = int(lower[at + 15:lower.index(b"\r\n", at)]) if at >= 0 else 0
                if length:
                    await reader.readexactly(length)
                record((started, perf(), status))
                if b"connection: close" in lower:
                    raise ConnectionError("server closed the connection")
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                record((started, perf(), 0))
                samples.transport_errors.append(repr(error))
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


def run_asyncio_clients(port: int, requests: Requests, clients: int, stop_at: float) -> Samples:
    samples = Samples()

    async def main() -> None:
        await asyncio.gather(*(_async_client(port, requests, samples, stop_at) for _ in range(clients)))

    asyncio.run(main())
    return samples


def run_thread_clients(port: int, requests: Requests, clients: int, stop_at: float) -> Samples:
    samples = Samples()
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {BENCH_TOKEN}", "Content-Type": "application/json"}

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        perf = time.perf_counter
        while True:
            started = perf()
            if started >= stop_at:
                break
            with lock:
                _, body = requests.next()
            try:
                connection.request("POST", "/api/handoffs", body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                samples.records.append((started, perf(), response.status))
            except (OSError, http.client.HTTPException) as error:
                samples.records.append((started, perf(), 0))
                samples.transport_errors.append(repr(error))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples


CLIENTS: dict[str, Callable[[int, Requests, int, float], Samples]] = {
    "asyncio": run_asyncio_clients,
    "threads": run_thread_clients,
}


@dataclass
class Result:
    backend: str
    requests: int
    created: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu: float
    client_cpu: float
    statuses: dict[int, int]
    sample_errors: list[str]
    stored: int = 0
    answered_201: int = 0

    @property
    def created_per_s(self) -> float:
        return self.created / self.seconds

    @property
    def passed(self) -> bool:
        return self.created_per_s >= TARGET_CREATED_PER_S and self.p99_ms <= TARGET_P99_MS and self.errors == 0


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_backend(backend: str, database_url: str, args: argparse.Namespace) -> Result:
    with Server(database_url, workers=args.workers) as server:
        requests = Requests(server.port, uuid.uuid4().hex[:8])
        started = time.perf_counter()
        window_start = started + args.warmup
        window_end = window_start + args.seconds
        cpu_server: list[float] = []
        cpu_client: list[float] = []

        def mark() -> None:  # CPU counters at the start of the measured window
            cpu_server.append(server.cpu_seconds())
            cpu_client.append(_cpu_self())

        timer = threading.Timer(args.warmup, mark)
        timer.start()
        samples = CLIENTS[args.client](server.port, requests, args.clients, window_end)
        timer.join()
        server_cpu = server.cpu_seconds() - cpu_server[0]
        client_cpu = _cpu_self() - cpu_client[0]
        client = Client(server.port)  # sanity: every 201 (warm-up included) is a stored handoff
        _, newest, _ = client.get("/api/handoffs?limit=1")
        client.close()
        stored = newest["items"][0]["id"] if newest and newest.get("items") else 0
    measured = [r for r in samples.records if r[0] >= window_start]
    elapsed = max((end for _, end, _ in measured), default=window_end) - window_start
    statuses: dict[int, int] = {}
    for _, _, status in measured:
        statuses[status] = statuses.get(status, 0) + 1
    latencies = [(end - begin) * 1000 for begin, end, _ in measured]
    created = statuses.get(201, 0)
    return Result(
        backend=backend, requests=len(measured), created=created, errors=len(measured) - created,
        seconds=elapsed, p50_ms=percentile(latencies, 0.50), p99_ms=percentile(latencies, 0.99),
        max_ms=max(latencies, default=float("nan")), server_cpu=server_cpu / elapsed,
        client_cpu=client_cpu / elapsed, statuses=statuses, sample_errors=samples.transport_errors[:3],
        stored=stored, answered_201=sum(1 for _, _, status in samples.records if status == 201),
    )


def print_result(result: Result) -> None:
    print(f"  requests      {result.requests}")
    print(f"  created/s     {result.created_per_s:.1f}")
    print(f"  latency ms    p50 {result.p50_ms:.1f}   p99 {result.p99_ms:.1f}   max {result.max_ms:.1f}")
    print(f"  errors        {result.errors}" + (f"   (statuses {result.statuses})" if result.errors else ""))
    for error in result.sample_errors:
        print(f"    e.g. {error}")
    check = "as answered" if result.stored == result.answered_201 else f"but {result.answered_201} answered 201"
    print(f"  stored        {result.stored} handoffs in the database (warm-up included), {check}")
    per_request = result.server_cpu * result.seconds / max(result.requests, 1) * 1000
    print(f"  cpu           server {result.server_cpu * 100:.0f}% of a core ({per_request:.2f} ms a request), "
          f"client {result.client_cpu * 100:.0f}% of a core")
    print(f"  target ≥ {TARGET_CREATED_PER_S:.0f} created/s with p99 ≤ {TARGET_P99_MS:.0f} ms: "
          f"{verdict(result.passed)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16, help="concurrent keep-alive connections (16)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration per backend (10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured warm-up before it (1)")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"server worker processes, HANDOFF_WORKERS ({DEFAULT_WORKERS})")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="asyncio",
                        help="client implementation (asyncio: lightest on CPU)")
    parser.add_argument("--pg-url", help="PostgreSQL maintenance URL (default: $TEST_DATABASE_URL or local test db)")
    args = parser.parse_args(argv)

    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(f"intake benchmark: {args.clients} clients × {args.seconds:g} s (+{args.warmup:g} s warm-up), "
          f"{args.client} client, server with {args.workers} worker process(es) · {machine_line()}")
    results: list[Result] = []
    for backend in backends:
        print(f"\n[{backend}]")
        if backend == "sqlite":
            with tempfile.TemporaryDirectory(prefix="handoff-bench-db-") as directory:
                url = f"sqlite:///{Path(directory) / 'handoffs.db'}"
                result = bench_backend(backend, url, args)
        else:
            with postgres_database(pg_base_url(args.pg_url)) as url:
                result = bench_backend(backend, url, args)
        print_result(result)
        results.append(result)

    ok = all(r.passed for r in results)
    print(f"\ntarget ≥ {TARGET_CREATED_PER_S:.0f} created/s with p99 ≤ {TARGET_P99_MS:.0f} ms: {verdict(ok)}"
          + ("" if ok else "  (" + ", ".join(f"{r.backend} {verdict(r.passed)}" for r in results) + ")"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
