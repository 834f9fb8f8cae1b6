"""The database side of a Claim press, in one process without HTTP: what a worker spends beside Bolt and FastAPI.

    .venv/bin/python bench/claim_path.py [--handoffs 3000] [--threads 16]

On a fresh SQLite file (migrated as `serve` migrates it), creates `--handoffs` handoffs, then claims half of
them one after the other (each claim its own write) and the other half from `--threads` threads at once (their
writes share batches, as a worker's presses do: storage/group_commit.py). Prints the wall time per claim of the
first, and the wall and CPU time per claim of the second. `HandoffService.act` is what the Claim listener calls
(`notify_in` set: a refusal would also queue a private notice).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness import machine_line  # noqa: E402

from bot.runtime import Runtime, build_runtime  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from handoffs.lifecycle import Action, Actor, Request  # noqa: E402
from handoffs.model import HandoffIn  # noqa: E402

CHANNEL = "CBENCH"


def claim(runtime: Runtime, handoff_id: int) -> None:
    runtime.service.act(handoff_id, Request(Action.claim), Actor(f"U0CLICK{handoff_id % 500:03d}"), notify_in=CHANNEL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handoffs", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="claim-path-")
    runtime = build_runtime(load_settings({
        "DATABASE_URL": f"sqlite:///{workdir}/handoffs.db", "SLACK_SIGNING_SECRET": "bench-secret",
        "SLACK_BOT_TOKEN": "xoxb-bench", "HANDOFF_API_TOKENS": "bench:bench-token-0123",
        "HANDOFF_DEFAULT_CHANNEL": CHANNEL,
    }))
    try:
        ids = [runtime.service.submit(HandoffIn(title=f"Call customer {n} back", next_action="Phone them",
                                                summary="Asked for a call back.", created_by="bench"),
                                      actor="bench").handoff.id
               for n in range(args.handoffs)]
        one_by_one, together = ids[: len(ids) // 2], ids[len(ids) // 2:]
        print(f"claim path: {args.handoffs} handoffs on SQLite; {machine_line()}")

        started = time.perf_counter()
        for handoff_id in one_by_one:
            claim(runtime, handoff_id)
        print(f"  one at a time: {1e6 * (time.perf_counter() - started) / len(one_by_one):.0f} µs a claim")

        cpu, started = time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(lambda handoff_id: claim(runtime, handoff_id), together))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(f"  {args.threads} threads at once: {1e6 * wall / len(together):.0f} µs wall, "
              f"{1e6 * cpu / len(together):.0f} µs CPU a claim")
    finally:
        runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
