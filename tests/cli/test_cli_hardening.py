"""Issue 8's smaller defects, over real processes: bounded logs, file modes, client exits."""

from __future__ import annotations

import asyncio
import re

from net import open_client, read_line, read_until_eof
from proc import start_sockhub
from sockhub.logs import BURST, INTERVAL

# --- Logs under attack -------------------------------------------------------------


async def test_a_flood_of_refused_connections_logs_a_bounded_number_of_lines():
    served = await start_sockhub("echo", "--port", "0", "--max-conns", "1")
    port = served.ports["echo"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        kept = await open_client(port)
        kept[1].write(b"in\n")  # admitted before the flood starts
        assert await read_line(kept[0]) == b"in\n"
        refused = 300

        async def one() -> None:
            reader, writer = await open_client(port)
            assert await read_until_eof(reader) == (
                b"error: server full (1 connections); try again later\r\n")
            writer.close()

        for _ in range(refused // 50):
            await asyncio.gather(*(one() for _ in range(50)))
        kept[1].close()
    finally:
        assert await served.stop() == 0
    elapsed = loop.time() - started
    lines = [line for line in served.log if "refused" in line]
    full = [line for line in lines if re.search(r"refused 127\.0\.0\.1:\d+: server full", line)]
    summaries = [re.search(r"refused ([\d,]+) more connections in the last [\d.]+ s: "
                           r"server full \(1 connections\); try again later \(([\d,]+) times?\)",
                           line) for line in lines if line not in full]
    assert all(summaries), lines
    # Every refusal is accounted for, the last window's by the flush at shutdown ...
    counted = sum(int(m.group(1).replace(",", "")) for m in summaries)  # type: ignore[union-attr]
    assert len(full) + counted == refused
    # ... in at most BURST lines and one summary per window of INTERVAL seconds.
    windows = 1 + int(elapsed // INTERVAL) + 1
    assert len(lines) <= (BURST + 1) * windows
    assert len(full) >= BURST and summaries
