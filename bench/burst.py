"""A burst of 500 handoffs to 5 channels, through the real bot, to a Slack that allows 1 message/s per channel.

    python bench/burst.py [--handoffs 500] [--channels 5]

`handoff-bot serve` runs in a subprocess with a HANDOFF_CONFIG of one route per channel (chosen by
`source.system`); its Web API calls go to a FakeSlack in this process that enforces a token bucket of
1 message a second per channel with a burst of 1, answering 429 + Retry-After above it. The 500 handoffs
are submitted over the intake API at once; the bench waits until every card is posted and reports how
close the delivery came to the channel limit, and how often Slack had to say 429.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _slack_common import api_request, bot_server, machine_line, percentile, run_load, verdict

from bot.outbox import ChannelPacer
from tests.fakes.slack_api import FakeSlack

RATE_PER_CHANNEL = 1.0  # Slack: about one message a second per channel
FAKE_BURST = 1
TARGET_OVER_FLOOR = 1.10  # within 10 % of the channel limit
STORM_SHARE = 0.05  # more 429s than 5 % of the messages is a storm
CARD_REF = re.compile(r"\bH-(\d+)\b")


def channel_of(index: int) -> str:
    return f"C0BURST{index + 1}"


def write_config(path: Path, channels: int) -> None:
    routes = [{"name": f"ch{c + 1}", "when": {"source_system": f"ch{c + 1}"}, "channel": channel_of(c)}
              for c in range(channels)]
    routes.append({"name": "default", "channel": "C0BURSTX"})
    path.write_text(json.dumps({"routes": routes}, indent=2))  # JSON is YAML


# Experiment only (--sender-burst): start the bot with another ChannelPacer burst patched in. The product's
# own default is used unless the flag is given.
PATCHED_SERVE = """
import sys
import bot.server
from bot.outbox import ChannelPacer, OutboxSender

class _Sender(OutboxSender):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("pacer", ChannelPacer(burst={burst}))
        super().__init__(*args, **kwargs)

bot.server.OutboxSender = _Sender
from bot.cli import main
sys.exit(main(["serve"]))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handoffs", type=int, default=500)
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--sender-burst", type=float, default=None,
                        help="experiment: run the bot with ChannelPacer(burst=N) instead of its default")
    args = parser.parse_args()
    run = time.strftime("%H%M%S")

    per_channel = Counter(n % args.channels for n in range(args.handoffs))
    # The fake's bucket starts full (FAKE_BURST messages at once), then refills at RATE_PER_CHANNEL:
    # the busiest channel cannot finish before (its messages - burst) / rate seconds.
    floor = max(1.0, max((count - FAKE_BURST) / RATE_PER_CHANNEL for count in per_channel.values()))
    deadline_s = floor * 3 + 120

    print(f"burst bench: {args.handoffs} handoffs to {args.channels} channels "
          f"({max(per_channel.values())} per channel), fake Slack limit {RATE_PER_CHANNEL:g} msg/s per channel, "
          f"burst {FAKE_BURST}")
    sender_burst = ChannelPacer().burst if args.sender_burst is None else args.sender_burst
    print(f"  sender: bot.outbox.ChannelPacer rate {ChannelPacer().rate:g}/s, burst {sender_burst:g}"
          f"{' (patched in for this run)' if args.sender_burst is not None else ' (the product default)'}")
    print(f"  {machine_line()}")

    with FakeSlack() as slack:
        slack.enforce_rate(per_channel_per_second=RATE_PER_CHANNEL, burst=FAKE_BURST)
        bot = bot_server(slack.url)
        config = bot.workdir / "handoffs.yml"
        write_config(config, args.channels)
        bot.env["HANDOFF_CONFIG"] = str(config)
        if args.sender_burst is not None:
            bot.argv = [sys.executable, "-c", PATCHED_SERVE.format(burst=float(args.sender_burst))]
        try:
            bot.start()
            bodies = [
                api_request(bot.port, "POST", "/api/handoffs", {
                    "title": f"Follow up burst item {n} ({run})",
                    "next_action": "Reply to the customer",
                    "source": {"system": f"ch{n % args.channels + 1}", "label": f"burst {n}"},
                    "created_by": "burst-bench",
                })
                for n in range(args.handoffs)
            ]
            started = time.monotonic()
            submitted = run_load(bot.port, bodies, concurrency=8, keep_bodies=True)
            submit_s = time.monotonic() - started
            created = sum(1 for status, _ in submitted.bodies if status == 201)
            print(f"  {created} of {args.handoffs} accepted by the API in {submit_s:.1f} s; waiting for the cards …")

            next_report = started + 15
            while True:
                delivered = len(slack.posted_cards())
                now = time.monotonic()
                if delivered >= created or now - started > deadline_s:
                    break
                if now >= next_report:
                    print(f"    {now - started:5.0f} s: {delivered} cards posted, {slack.rate_limited_count} × 429")
                    next_report += 15
                time.sleep(0.2)
            time.sleep(1.0)  # anything still in flight (a duplicate would show here)
            cards = slack.posted_cards()
            rate_limited = slack.rate_limited_count
            limited = [call for call in slack.calls("chat.postMessage") if call.status == 429]
        finally:
            bot.stop()

    delivered = len(cards)
    limited_by_channel = Counter(call.channel for call in limited)
    limited_early = sum(1 for call in limited if call.received_at - started <= 5.0)
    last = max((call.answered_at or 0.0) for call in cards) if cards else started
    total = last - started
    by_channel = Counter(call.channel for call in cards)
    numbers = Counter(int(m.group(1)) for call in cards if (m := CARD_REF.search(str(call.params.get("text", "")))))
    duplicates = sum(count - 1 for count in numbers.values() if count > 1)
    in_order = True
    for channel_index in range(args.channels):
        seen = [int(m.group(1)) for call in cards if call.channel == channel_of(channel_index)
                if (m := CARD_REF.search(str(call.params.get("text", ""))))]
        in_order &= seen == sorted(seen)

    gaps = []
    for channel_index in range(args.channels):
        times = sorted(call.received_at for call in cards if call.channel == channel_of(channel_index))
        gaps += [later - earlier for earlier, later in pairwise(times)]

    print()
    print(f"  delivered:      {delivered} of {args.handoffs} cards "
          f"({', '.join(f'{c}: {n}' for c, n in sorted(by_channel.items()))})")
    print(f"  duplicates:     {duplicates}   per-channel order kept: {'yes' if in_order else 'no'}"
          f"   (cards identified by H-id: {sum(numbers.values())})")
    print(f"  429 from fake:  {rate_limited} "
          f"({', '.join(f'{c}: {n}' for c, n in sorted(limited_by_channel.items())) or 'none'}; "
          f"{limited_early} in the first 5 s, {len(limited) - limited_early} later)")
    if gaps:
        print(f"  card intervals: per channel, between successful posts: median {percentile(gaps, 0.5):.3f} s, "
              f"p90 {percentile(gaps, 0.9):.3f} s, max {max(gaps):.3f} s (the limit allows 1.000 s)")
    print(f"  total time:     {total:.1f} s (first submission to last card posted; submitting took {submit_s:.1f} s)")
    print(f"  channel floor:  {floor:.1f} s ((max {max(per_channel.values())} messages per channel − burst "
          f"{FAKE_BURST}) / {RATE_PER_CHANNEL:g} msg/s)")
    print(f"  total / floor:  {total / floor:.3f}")
    if rate_limited and sender_burst > FAKE_BURST:
        print(f"  note: the sender allows bursts of {sender_burst:g} per channel, the fake Slack {FAKE_BURST}: "
              f"its catch-up sends after a late one arrive < 1 s apart and are refused")
    storm_limit = int(STORM_SHARE * args.handoffs)
    passed = (delivered == args.handoffs and duplicates == 0 and rate_limited <= storm_limit
              and total <= floor * TARGET_OVER_FLOOR)
    print(f"  target: all delivered, no 429 storm (≤ {storm_limit} × 429), within 10 % of the channel limit: "
          f"{verdict(passed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
