"""Part of benchmarks/chat.py: the tables and the verdict against the targets.

Plain text or Markdown from the rows the runs produced; benchmarks/irc.py
uses :func:`render` too. Imported, not run.
"""

from __future__ import annotations

import math

from benchlib import NOISE
from chat_fanout import Row
from chat_memory import NcatProbe, SockhubMemory

TARGET_US_PER_DELIVERY = 1.0  # at N = 100-500
TARGET_KIB_PER_CLIENT = 5.0


def render(headers: list[str], body: list[list[str]], markdown: bool) -> str:
    if markdown:
        align = ["---" if i == 0 or name == "notes" else "---:" for i, name in enumerate(headers)]
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [headers, *body]) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                  for i, (cell, w) in enumerate(zip(cells, widths, strict=True)))
        for cells in [headers, *body]
    )


FANOUT_HEADERS = ["N", "server", "M", "deliveries", "deliveries/s", "vs ncat", "p50 ms",
                  "p99 ms", "server µs/delivery", "vs ncat", "server CPU %", "client CPU %",
                  "lost", "dup", "reordered"]


def fanout_table(rows: list[Row], markdown: bool) -> str:
    by_key = {(r.clients, r.server): r for r in rows}

    def ratio(mine: float, theirs: float | None) -> str:
        if not theirs or math.isnan(theirs) or math.isnan(mine):
            return "-"
        return f"{mine / theirs:.2f}x"

    body = []
    for r in rows:
        peer = by_key.get((r.clients, "ncat")) if r.server == "sockhub" else None
        body.append([
            str(r.clients),
            r.server,
            f"{r.messages:,}",
            f"{r.deliveries:,}" + ("" if r.deliveries == r.expected else f" of {r.expected:,}"),
            f"{r.deliveries_per_s:,.0f}",
            ratio(r.deliveries_per_s, peer.deliveries_per_s if peer else None),
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.us_per_delivery:.2f}",
            ratio(r.us_per_delivery, peer.us_per_delivery if peer else None),
            f"{r.server_cpu_pct:.0f}",
            f"{r.client_cpu_pct:.0f}",
            str(r.lost),
            str(r.duplicated),
            str(r.reordered),
        ])
    return render(FANOUT_HEADERS, body, markdown)


def memory_table(mems: list[SockhubMemory], probe: NcatProbe | None, markdown: bool) -> str:
    headers = ["server", "clients held", "RSS before", "RSS after", "KiB per client", "notes"]
    body = []
    for mem in mems:
        body.append([
            "sockhub, connected (no nick yet)", f"{mem.clients:,}",
            f"{mem.base_kib / 1024:.1f} MiB", f"{mem.connected_kib / 1024:.1f} MiB",
            f"{mem.per_client(mem.connected_kib):.1f}", f"connected in {mem.connect_s:.1f} s",
        ])
        body.append([
            "sockhub, registered (in #lobby)", f"{mem.clients:,}",
            f"{mem.base_kib / 1024:.1f} MiB", f"{mem.joined_kib / 1024:.1f} MiB",
            f"{mem.per_client(mem.joined_kib):.1f}",
            f"all joined in {mem.join_s:.1f} s ({mem.join_cpu_s:.1f} s server CPU); "
            f"peak {mem.peak_kib / 1024:.0f} MiB"
            + (f"; ERRORS {mem.errors}: {mem.first_error}" if mem.errors else ""),
        ])
    if probe is not None:
        per = (probe.last_kib - probe.base_kib) / probe.served if probe.served else 0.0
        body.append([
            "ncat --chat", f"{probe.served:,}", f"{probe.base_kib / 1024:.1f} MiB",
            f"{probe.last_kib / 1024:.1f} MiB", f"{per:.1f}",
            f"{probe.outcome}" + (f" ({probe.ncat_said.strip()})" if probe.ncat_said else "")
            + f"; {probe.bytes_received / 1e9:.1f} GB of announcements read in "
            f"{probe.seconds:.0f} s",
        ])
    return render(headers, body, markdown)


def verdict(rows: list[Row], mem: SockhubMemory | None) -> list[str]:
    """The targets, checked against what was measured (reported, never asserted)."""
    out = []
    mine = [r for r in rows if r.server == "sockhub"]
    big = [r for r in mine if 100 <= r.clients <= 500]
    if big:
        worst = max(r.us_per_delivery for r in big)
        out.append(f"target <= {TARGET_US_PER_DELIVERY:g} µs server CPU per delivery at "
                   f"N=100-500: worst {worst:.2f} µs -> "
                   + ("met" if worst <= TARGET_US_PER_DELIVERY else "NOT met"))
    bad = sum(r.lost + r.reordered + r.duplicated + r.garbled + r.errors for r in mine)
    if mine:
        out.append("target zero lost or reordered: " + ("met" if not bad else
                   f"NOT met ({bad} problems)"))
    peers = [r for r in rows if r.server != "sockhub"]
    peer_bad = [f"N={r.clients}: lost {r.lost}, garbled {r.garbled}, errors {r.errors}"
                for r in peers if r.lost or r.garbled or r.errors or r.reordered]
    if peer_bad:
        out.append("ncat problems: " + "; ".join(peer_bad))
    if mem is not None:
        per = mem.per_client(mem.joined_kib)
        out.append(f"target <= {TARGET_KIB_PER_CLIENT:g} KiB server memory per idle client: "
                   f"{per:.1f} KiB registered -> "
                   + ("met" if per <= TARGET_KIB_PER_CLIENT else "NOT met"))
    saturated = [f"N={r.clients} {r.server}" for r in rows if r.client_cpu_pct >= 90]
    if saturated:
        out.append("client CPU >= 90% of its core for " + ", ".join(saturated)
                   + ": deliveries/s is capped by the load generator there; compare µs/delivery")
    noisy = [f"N={r.clients} {r.server} ({r.background_pct:.0f}%)" for r in rows
             if r.background_pct > 100 * NOISE]
    if noisy:
        out.append("other processes used CPU during " + ", ".join(noisy))
    return out
