"""What a run measured: the merged figures, whether they pass, and their report.

Apart from the parent that fills it because callers (the CLI, the benchmark
scripts) only read it, and its report is the bench's user interface.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


def percentile(sorted_values: list[int], fraction: float) -> int:
    """The nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


@dataclass
class ChatBenchResult:
    """What one run measured (``--json`` prints this, plus ``ok``)."""

    target: str
    mode: str
    room: str
    clients: int
    senders: int
    messages: int
    rate: float | None
    window: int
    procs: int
    setup_s: float
    seconds: float
    sent: int
    expected: int
    deliveries: int
    deliveries_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    lost: int
    duplicated: int
    reordered: int
    garbled: int
    errors: int
    first_error: str
    client_cpu_s: float
    echo: bool = False  # IRC: the senders had echo-message
    #: Paced runs: the deliveries a second the plan offers (K x rate x recipients).
    offered_per_s: float = 0.0
    #: Paced runs: the share of messages sent with no other within half a slot
    #: (1/(2·K·rate)) of it, i.e. that reached the server alone.
    sent_alone: float = 0.0
    #: Paced runs: how late the senders' process sent on its schedule (p99).
    send_late_p99_ms: float = 0.0

    @property
    def ok(self) -> bool:
        """Every message reached every client once and in order, and nothing failed."""
        return (self.errors == 0 and self.lost == 0 and self.duplicated == 0
                and self.reordered == 0 and self.garbled == 0
                and self.deliveries == self.expected)

    @property
    def behind_s(self) -> float:
        """Paced runs: how much longer than the sending the run took (0 at the pace).

        Sender ``s`` starts ``s / (K * rate)`` after the first (worker.py
        staggers them over one slot each), so the last message is due
        ``(messages - 1) / rate + (K - 1) / (K * rate)`` after the first
        send. A run that took longer fell behind its pace (the server, or the
        load's own reading), so its latencies measure a backlog, not the server.
        """
        if not self.rate or not self.seconds:
            return 0.0
        due = (self.messages - 1) / self.rate + (self.senders - 1) / (
            self.senders * self.rate)
        return max(0.0, self.seconds - due)

    def pace_misses(self) -> list[str]:
        """Why a paced run did not hold its pace (empty: it held; unpaced: no pace)."""
        if not self.rate:
            return []
        if not self.offered_per_s:
            return ["nothing offered"]
        misses: list[str] = []
        if self.deliveries_per_s < 0.95 * self.offered_per_s:
            misses.append("under 95% of the deliveries/s offered")
        if self.behind_s > 1.0:
            cpu = 100.0 * self.client_cpu_s / self.seconds / max(1, self.procs)
            misses.append(f"over 1 s behind: the server or this load could not keep up "
                          f"({self.procs} process(es) at {cpu:.0f}% each), so the latencies "
                          "are a backlog's")
        if self.sent_alone < 0.95:
            misses.append("under 95% of messages sent alone")
        slot_ms = 1e3 / (self.senders * self.rate)
        if self.send_late_p99_ms >= slot_ms:
            misses.append(f"sends late p99 over a slot ({slot_ms:.2f} ms)")
        return misses

    @property
    def pace_held(self) -> bool:
        """A paced run kept its pace: deliveries/s within 5% of the offered rate, done
        within a second of when its last message was due (:attr:`behind_s`), the
        messages sent alone (>= 95%), and the senders on schedule (p99 late < a slot).
        False for an unpaced run (``null`` in ``--json``): it has no pace."""
        return bool(self.rate) and not self.pace_misses()

    def report(self) -> str:
        pacing = (f"{self.rate:g} msg/s each" if self.rate else
                  "as fast as acknowledged" if self.window == 1 else
                  f"at most {self.window} unacknowledged each")
        cpu = 100.0 * self.client_cpu_s / self.seconds if self.seconds else 0.0
        lines = [
            f"bench chat {self.target} ({self.mode}{', echo-message' if self.echo else ''}): "
            f"{self.clients} clients in {self.room}, "
            f"{self.senders} senders x {self.messages} messages, {pacing}, "
            f"{self.procs} client process(es)",
            f"setup       {self.setup_s:.2f} s to connect and join",
            f"deliveries  {self.deliveries:,} of {self.expected:,}  "
            f"({self.deliveries_per_s:,.0f}/s over {self.seconds:.2f} s; "
            f"{self.sent:,} messages sent)",
            f"latency     p50 {self.p50_ms:.3f} ms   p99 {self.p99_ms:.3f} ms   "
            f"max {self.max_ms:.3f} ms",
            f"checks      lost {self.lost}  duplicated {self.duplicated}  "
            f"reordered {self.reordered}  garbled {self.garbled}",
            f"errors      {self.errors}" + (f"  (first: {self.first_error})"
                                            if self.first_error else ""),
            f"client CPU  {self.client_cpu_s:.2f} s in the window ({cpu:.0f}% of one core)",
            *([f"pace        {self.deliveries_per_s:,.0f} of {self.offered_per_s:,.0f} "
               f"deliveries/s offered; {100 * self.sent_alone:.1f}% of messages sent alone; "
               f"sends late p99 {self.send_late_p99_ms:.2f} ms; done {self.behind_s:.2f} s "
               "after the last was due -> "
               + ("held" if self.pace_held else "NOT held: " + "; ".join(self.pace_misses()))]
              if self.rate else []),
            "result      " + ("ok" if self.ok else "FAILED"),
        ]
        return "\n".join(lines)

    def to_json(self) -> str:
        paced = bool(self.rate)
        return json.dumps({**asdict(self), "ok": self.ok,
                           "pace_held": self.pace_held if paced else None,
                           "behind_s": round(self.behind_s, 3) if paced else None})
