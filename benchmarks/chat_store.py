"""What storing room messages costs: the chat store's commit and row, by batch size.

The chat service stores each loop turn's room messages in one commit before
anyone sees them (group commit, issue 16). This times
``ChatStore.append_many`` alone, on a real file in WAL mode, for batches of
1 to a few hundred messages, and prints CPU per commit, per message, and
the fitted fixed cost of a commit and cost of a row (least squares over the
batch sizes). ``--base-src`` runs another revision's store beside this
one's, alternately, round after round, and prints the paired ratio.

    python benchmarks/chat_store.py
    git archive BASE src | tar -x -C /tmp/base
    python benchmarks/chat_store.py --base-src /tmp/base/src --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")

#: Run in a fresh interpreter per revision: prints {batch: CPU seconds per commit}.
_CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
from sockhub.hub.events import Message
from sockhub.store.history import ChatStore
batches, messages = json.loads(sys.argv[1]), int(sys.argv[2])
text = "a room message of a typical length, some forty bytes"
out = {}
with tempfile.TemporaryDirectory(prefix="sockhub-store-") as folder:
    store = ChatStore(Path(folder) / "chat.sqlite3")
    for batch in batches:
        commits = max(20, messages // batch)
        made = [[Message("#bench", f"u{i % 10}", text, 1.0, False, None, False, False, (),
                         "user", "127.0.0.1") for _ in range(batch)] for i in range(commits)]
        store.append_many(made[0])  # the statement prepared, the pages read
        start = time.process_time()
        for messages_ in made[1:]:
            store.append_many(messages_)
        out[batch] = (time.process_time() - start) / (commits - 1)
    store.close()
print(json.dumps(out))
"""


def measure(src: str, batches: list[int], messages: int) -> dict[int, float]:
    """CPU seconds per commit for each batch size, from a fresh interpreter on ``src``."""
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(batches), str(messages)],
                          env=env, check=True, capture_output=True, text=True)
    return {int(k): v for k, v in json.loads(done.stdout).items()}


def fit(seconds: dict[int, float]) -> tuple[float, float]:
    """(µs per commit, µs per row): least squares of commit CPU over batch size."""
    slope, intercept = statistics.linear_regression(
        list(seconds), [v * 1e6 for v in seconds.values()])
    return intercept, slope


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,2,5,10,30,64,100,200",
                        help="batch sizes (messages per commit; default 1,2,5,10,30,64,100,200)")
    parser.add_argument("--messages", type=int, default=30_000,
                        help="messages stored per batch size and run (default 30,000)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs per revision; the median is reported (default 3)")
    parser.add_argument("--base-src", help="another revision's src/ to run beside this one")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if not batches or min(batches) < 1 or args.messages < 1 or args.rounds < 1:
        parser.error("batch sizes, --messages and --rounds must be at least 1")
    trees = {"this": SRC} | ({"base": args.base_src} if args.base_src else {})
    runs: dict[str, list[dict[int, float]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, src in trees.items():  # alternately: drifts in load hit both
            runs[name].append(measure(src, batches, args.messages))
    medians = {name: {b: statistics.median(r[b] for r in got) for b in batches}
               for name, got in runs.items()}
    print("| batch | " + " | ".join(f"{n} µs/commit | {n} µs/message" for n in trees)
          + (" | this/base (paired median) |" if args.base_src else " |"))
    print("|---:|" + "---:|---:|" * len(trees) + ("---:|" if args.base_src else ""))
    for b in batches:
        cells = [f"{medians[n][b] * 1e6:.1f} | {medians[n][b] * 1e6 / b:.2f}" for n in trees]
        ratio = ""
        if args.base_src:
            paired = statistics.median(t[b] / s[b] for t, s in zip(runs["this"], runs["base"],
                                                                   strict=True))
            ratio = f" {paired:.2f}x |"
        print(f"| {b} | " + " | ".join(cells) + " |" + ratio)
    if len(batches) >= 2:
        for name in trees:
            commit, row = fit(medians[name])
            print(f"{name}: fitted {commit:.1f} µs per commit + {row:.2f} µs per row")
    return 0


if __name__ == "__main__":
    sys.exit(main())
