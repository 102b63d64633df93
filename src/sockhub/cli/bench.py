"""``sockhub bench echo`` and ``sockhub bench chat``: the load generators."""

from __future__ import annotations

import argparse

from sockhub.cli.clients import chat_address
from sockhub.cli.summaries import SUMMARIES
from sockhub.errors import ConfigError


def add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help=SUMMARIES["bench"],
        description="Measure a service under load.",
    )
    kinds = p.add_subparsers(dest="bench_kind", metavar="KIND", required=True)
    e = kinds.add_parser(
        "echo",
        help="closed-loop request/response load against an echo service",
        description="Each connection sends SIZE bytes and waits for the full echo before "
        "sending again, for SECONDS. Prints requests per second, MB/s, latency p50/p99 and "
        "errors, and the client's own CPU time: near 100%% per process means the client, "
        "not the server, is the limit; add --procs.",
        epilog="example:\n  sockhub bench echo 127.0.0.1:9000 --conns 10 --size 1024 --seconds 5"
        " --procs 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("address", metavar="HOST:PORT")
    e.add_argument("--conns", type=int, default=10, metavar="C", help="connections (default 10)")
    e.add_argument("--size", type=int, default=1024, metavar="S",
                   help="bytes per request (default 1024)")
    e.add_argument("--seconds", type=float, default=5.0, metavar="D",
                   help="duration (default 5)")
    e.add_argument("--procs", type=int, default=1, metavar="P",
                   help="client processes sharing the connections (default 1)")
    e.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                   help="the client's event loop (default: uvloop if installed)")
    e.add_argument("--json", action="store_true", help="print one JSON object instead")
    c = kinds.add_parser(
        "chat",
        help="fan-out load against the chat hub's line door",
        description="Connect N clients to one room; K of them each send M messages. Measures "
        "delivered messages per second and send-to-receipt latency, and checks that every "
        "client got every message exactly once, in each sender's order. Run the server with "
        "flood control off (--flood-rate none) or the senders will be throttled.",
        epilog=f"example:\n  sockhub bench chat {chat_address()} --clients 100 --senders 10 "
        "--messages 200",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("address", metavar="HOST:PORT")
    c.add_argument("--clients", type=int, default=100, metavar="N",
                   help="connected clients, all in one room (default 100)")
    c.add_argument("--senders", type=int, default=10, metavar="K",
                   help="how many of them send (default 10)")
    c.add_argument("--messages", type=int, default=100, metavar="M",
                   help="messages per sender (default 100)")
    c.add_argument("--rate", type=float, metavar="R",
                   help="messages a second per sender (default: as fast as acknowledged)")
    c.add_argument("--realtime", action="store_true",
                   help="with --rate: run the senders' process at real-time priority "
                   "(SCHED_FIFO 1 as root, else nice -10 if allowed) so its sends keep "
                   "their slots beside busy readers; changes the scheduling of the whole "
                   "machine, so off unless given")
    c.add_argument("--room", default="#bench", help="room to use (default #bench)")
    c.add_argument("--mode", choices=("line", "ncat", "irc", "ws"), default="line",
                   help="line: sockhub's line door; ncat: 'ncat --chat' (raw lines); "
                   "irc: any IRC server (PRIVMSG to the room; echo-message if offered); "
                   "ws: sockhub's web door (JSON protocol v1 over a WebSocket at /ws)")
    c.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="give up after this many seconds (default 60)")
    c.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.set_defaults(run=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from sockhub.client.address import parse_hostport
    from sockhub.client.bench import bench_echo

    host, port = parse_hostport(args.address)
    if args.bench_kind == "chat":
        from sockhub.client.chatbench import bench_chat

        try:
            chat = bench_chat(host, port, clients=args.clients, senders=args.senders,
                              messages=args.messages, rate=args.rate, room=args.room,
                              mode=args.mode, timeout=args.timeout,
                              realtime=args.realtime)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        print(chat.to_json() if args.json else chat.report())
        return 0 if chat.ok else 1
    try:
        result = bench_echo(host, port, conns=args.conns, size=args.size,
                            seconds=args.seconds, procs=args.procs, loop=args.loop)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    print(result.to_json() if args.json else result.report())
    return 0 if result.requests and not result.errors else 1
