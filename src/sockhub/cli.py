"""The ``sockhub`` command: parse options into config objects, call the library.

Nothing here knows how a service works; every option is spelled once, and
the limit options are generated from :class:`sockhub.limits.Limits`.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from collections.abc import Sequence
from typing import Any

from sockhub import __version__
from sockhub.errors import ConfigError
from sockhub.limits import limit_fields

EPILOG_SERVE = """\
services:
  echo       every byte back as received                      (port 9000)
  upper      each line back upper-cased                       (port 9003)
  hello      greets 'hello!', answers 'Hello, <line>!'        (port 9004)
  udp-echo   every UDP datagram back to its sender            (port 9000/udp)
  chat       group chat: line door, --irc-port opens IRC      (port 9999)
  exec       runs allow-listed commands for token holders     (port 9001)
  pkg.module:Class   your own sockhub.Protocol subclass (docs/writing-a-service.md)

With no SERVICE and no --config, sockhub serve runs the chat hub with its line
door (port 9999) and IRC door (port 6667). Each bound socket is logged to stderr as
  listening on HOST:PORT (SERVICE)
with the real port, so scripts can wait for it. SIGINT or SIGTERM shut down
gracefully: stop accepting, tell clients, drain for --drain-timeout, exit 0.

limits take a number or 'none' (off); sizes in bytes, times in seconds.

examples:
  sockhub serve echo --port 0
  sockhub serve hello --banner 'welcome to the hotline' --idle-timeout 60
  sockhub serve echo --tls-cert cert.pem --tls-key key.pem
  sockhub serve upper --unix /tmp/upper.sock
  sockhub serve echo --workers 2 --port 9000
  sockhub serve --config services.toml
  sockhub serve chat --irc-port 6667 --motd-file motd.txt
  sockhub serve exec --allow uptime --allow df --timeout 30
"""


class _Off:
    """What 'none' parses to: a limit turned off, as opposed to one not given."""


OFF = _Off()


def _number(text: str) -> float | _Off:
    if text.lower() in ("none", "off"):
        return OFF
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def limit_defaults(name: str) -> str:
    """``default 65536; chat 8192``: the engine's default, then each service's own."""
    from sockhub.limits import Limits
    from sockhub.services.registry import SERVICES

    def shown(value: Any) -> str:
        return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    return "; ".join(
        [f"default {shown(getattr(Limits(), name))}"]
        + [f"{service} {shown(spec.limits[name])}"
           for service, spec in SERVICES.items() if name in spec.limits]
    )


def _add_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run one service, several (--config), or the default set",
        description="Run socket services until SIGINT/SIGTERM.",
        epilog=EPILOG_SERVE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("service", nargs="?", metavar="SERVICE",
                   help="a built-in service name or pkg.module:Class")
    p.add_argument("--config", metavar="FILE.toml",
                   help="run the services listed in a TOML file (see docs/config.md)")
    where = p.add_argument_group("where to listen")
    where.add_argument("--host", action="append", metavar="ADDR",
                       help="address to bind, repeatable (default 127.0.0.1; '::1' for IPv6)")
    where.add_argument("--port", type=int, metavar="N",
                       help="port (default: the service's; 0 picks a free one, logged)")
    where.add_argument("--unix", metavar="PATH", help="listen on a Unix socket instead of TCP")
    where.add_argument("--tls-cert", metavar="PEM", help="TLS certificate chain (with --tls-key)")
    where.add_argument("--tls-key", metavar="PEM", help="TLS private key (with --tls-cert)")
    where.add_argument("--workers", type=int, default=1, metavar="N",
                       help="processes sharing the port via SO_REUSEPORT (stateless services)")
    behaviour = p.add_argument_group("service")
    behaviour.add_argument("--banner", metavar="TEXT", help="a line sent to each client on connect")
    behaviour.add_argument("--data-dir", metavar="DIR",
                           help="where services keep state (default ~/.local/state/sockhub)")
    chat = p.add_argument_group("chat")
    chat.add_argument("--history", type=int, metavar="N",
                      help="messages replayed to a user joining a room (default 50)")
    chat.add_argument("--flood-rate", type=_number, metavar="N",
                      help="lines a second one client may send on average (default 5; none = off)")
    chat.add_argument("--flood-burst", type=int, metavar="N",
                      help="lines one client may send at once before flood control (default 20)")
    chat.add_argument("--oper", action="append", metavar="NAME=HASH",
                      help="an operator account; HASH comes from 'sockhub passwd' (repeatable)")
    chat.add_argument("--protected-room", action="append", metavar="#ROOM",
                      help="a room whose topic only operators set (default #lobby; repeatable)")
    chat.add_argument("--server-name", metavar="NAME",
                      help="the name the server gives itself (default: 'sockhub' at the line "
                      "door, the host name in IRC prefixes and numerics)")
    chat.add_argument("--registration-timeout", type=_number, metavar="S",
                      help="seconds a client has, at every chat door, to choose a nick before "
                      "it is told and closed (default 60; none = off)")
    chat.add_argument("--irc-port", type=int, metavar="N",
                      help="open the IRC door on this port (0 = a free one; default: closed "
                      "for 'serve chat', 6667 for plain 'serve')")
    chat.add_argument("--motd-file", metavar="FILE",
                      help="text sent to IRC users as the message of the day")
    chat.add_argument("--irc-password", metavar="PASSWORD",
                      help="connection password IRC clients must send (PASS); plain text or a "
                      "hash from 'sockhub passwd'")
    ex = p.add_argument_group("exec (docs/exec-protocol.md)")
    ex.add_argument("--token-file", metavar="FILE",
                    help="the shared secret, mode 0600 (default: generated on first start "
                    "into DATA_DIR/exec-token, path logged)")
    ex.add_argument("--allow", action="append", metavar="CMD",
                    help="a command clients may run, matched exactly against argv[0] "
                    "(repeatable; required, unless --allow-any)")
    ex.add_argument("--allow-any", action="store_true",
                    help="let token holders run any command, shells included (logs a warning)")
    ex.add_argument("--allow-shell", action="store_true",
                    help="add sh to the allow list, for 'sockhub exec --shell' (sh runs anything)")
    ex.add_argument("--cwd", metavar="DIR", help="working directory of commands "
                    "(default: the server's)")
    ex.add_argument("--env", action="append", metavar="KEY=VALUE",
                    help="add to the commands' clean environment (PATH=/usr/bin:/bin); "
                    "repeatable")
    ex.add_argument("--timeout", type=_number, metavar="S",
                    help="seconds a command may run before its process group is killed "
                    "(default 300; none = off)")
    ex.add_argument("--max-output", type=_number, metavar="BYTES",
                    help="stdout + stderr bytes per command before it is killed "
                    "(default 134217728; none = off)")
    ex.add_argument("--max-concurrent", type=int, metavar="N",
                    help="commands running at once; one more is refused as busy (default 8)")
    ex.add_argument("--insecure", action="store_true",
                    help="allow a non-loopback --host without TLS (clear text; logs a warning)")
    limits = p.add_argument_group("limits and timeouts")
    for f in limit_fields():
        limits.add_argument(
            "--" + f.name.replace("_", "-"),
            dest="limit_" + f.name,
            type=_number,
            metavar="N",
            help=f"{f.metadata['help']} ({f.metadata['unit']}; {limit_defaults(f.name)})",
        )
    run = p.add_argument_group("process")
    run.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                     help="event loop: uvloop if installed (auto), or force one")
    run.add_argument("--log-level", default="info",
                     choices=("debug", "info", "warning", "error"), help="default info")
    run.add_argument("--log-format", default="text", choices=("text", "json"),
                     help="text lines or one JSON object per line")


def _serve_configs(args: argparse.Namespace) -> list[Any]:
    from sockhub.config import load_toml, service_from_mapping
    from sockhub.services.registry import DEFAULT_SERVICES

    limit_values: dict[str, Any] = {}
    for f in limit_fields():
        value = getattr(args, "limit_" + f.name)
        if value is OFF:
            limit_values[f.name] = None
        elif value is not None:
            if str(f.type).startswith("int"):
                if not value.is_integer():
                    flag = "--" + f.name.replace("_", "-")
                    raise ConfigError(f"{flag} must be a whole number, not {value:g}")
                value = int(value)
            limit_values[f.name] = value
    common: dict[str, Any] = {**limit_values}
    if args.host:
        common["host"] = args.host
    for key in ("tls_cert", "tls_key", "banner", "unix"):
        if getattr(args, key) is not None:
            common[key] = getattr(args, key)
    options = _chat_options(args)
    exec_options = _exec_options(args)
    if exec_options and args.service != "exec":
        raise ConfigError("the exec options (--token-file, --allow, ...) apply to "
                          "'sockhub serve exec' only")
    if args.data_dir is not None:
        options["data_dir"] = args.data_dir
    if args.config:
        if args.service:
            raise ConfigError("give a SERVICE or --config, not both")
        if options:
            common["options"] = options
        if args.port is not None:
            common["port"] = args.port
        return load_toml(args.config, base=common)
    if args.service:
        if options.keys() - {"data_dir"} and args.service != "chat":
            raise ConfigError("the chat options (--history, --oper, ...) apply to chat only")
        options.update(exec_options)
        return [
            service_from_mapping(
                {**common, "service": args.service, "port": args.port, "workers": args.workers,
                 "options": options},
                where="command line",
            )
        ]
    if args.port not in (None, 0):
        raise ConfigError("--port needs a SERVICE (or --port 0 for free ports for all)")
    if args.unix or args.workers != 1:
        raise ConfigError("--unix and --workers need a SERVICE")
    # The default hub opens every door: IRC on 6667, or a free port with --port 0.
    door_defaults = {"chat": {"irc_port": 0 if args.port == 0 else 6667}}
    return [
        service_from_mapping(
            {**common, "service": name, "port": args.port,
             "options": {**door_defaults.get(name, {}), **options}},
            where="default",
        )
        for name in DEFAULT_SERVICES
    ]


def _pairs(items: list[str], flag: str, shape: str) -> dict[str, str]:
    """``["a=1", "b=2"]`` → ``{"a": "1", "b": "2"}``, for NAME=HASH and KEY=VALUE options."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} takes {shape}, not {item!r}")
        pairs[key] = value
    return pairs


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options among ``names`` that were given, under their own names."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _chat_options(args: argparse.Namespace) -> dict[str, Any]:
    options = _given(args, "history", "flood_burst", "irc_port")
    options |= {k: v for k, v in _given(args, "server_name", "motd_file", "irc_password").items()
                if v}
    if args.flood_rate is not None:
        options["flood_rate"] = None if args.flood_rate is OFF else args.flood_rate
    if args.registration_timeout is not None:
        timeout = args.registration_timeout
        options["registration_timeout"] = None if timeout is OFF else timeout
    if args.oper:
        options["operators"] = _pairs(args.oper, "--oper", "NAME=HASH")
    if args.protected_room:
        options["protected_rooms"] = args.protected_room
    return options


def _exec_options(args: argparse.Namespace) -> dict[str, Any]:
    options = _given(args, "token_file", "cwd", "max_concurrent")
    if args.allow:
        options["allow"] = args.allow
    for flag in ("allow_any", "allow_shell", "insecure"):
        if getattr(args, flag):
            options[flag] = True
    if args.env:
        options["env"] = _pairs(args.env, "--env", "KEY=VALUE")
    if args.timeout is not None:
        options["timeout"] = None if args.timeout is OFF else args.timeout
    if args.max_output is not None:
        if args.max_output is not OFF and not args.max_output.is_integer():
            raise ConfigError(f"--max-output must be a whole number, not {args.max_output:g}")
        options["max_output"] = None if args.max_output is OFF else int(args.max_output)
    return options


def _cmd_serve(args: argparse.Namespace) -> int:
    from sockhub.engine import runner
    from sockhub.logs import setup_logging
    from sockhub.services.registry import resolve

    runner.ignore_hangup()
    setup_logging(args.log_level, args.log_format)
    configs = _serve_configs(args)
    return runner.run(configs, resolve, loop=args.loop, load=lambda: _serve_configs(args))


EPILOG_CONNECT = """\
Copies standard input to the connection and the connection to standard
output, both at once. At end of input the connection is half-closed and
output continues until the server closes. With --udp each input line is one
datagram. UDP has no close and TLS no half-close, so with either the client
exits --wait seconds after the end of input once no more data arrives.

examples:
  sockhub connect 127.0.0.1:9003            type lines, read them upper-cased
  sockhub connect 127.0.0.1 9003            the same, the way nc takes it
  printf 'alice\\nexit\\n' | sockhub connect localhost:9004
  sockhub connect --unix /tmp/upper.sock
  sockhub connect example.org:6697 --tls --cafile ca.pem
  echo hi | sockhub connect 127.0.0.1:9000 --udp
"""


def _add_client_tls(p: argparse.ArgumentParser, *, server_name: bool) -> None:
    """The TLS options every client command shares."""
    p.add_argument("--tls", action="store_true", help="use TLS, verifying the server")
    p.add_argument("--cafile", metavar="PEM", help="trust these CA certificates (implies --tls)")
    p.add_argument("--insecure", action="store_true",
                   help="TLS without checking the certificate (implies --tls)")
    if server_name:
        p.add_argument("--server-name", metavar="NAME", help="TLS server name to check (SNI)")


def _client_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """A client TLS context if any TLS option was given, else None."""
    if not (args.tls or args.cafile or args.insecure):
        return None
    from sockhub.client.address import client_tls_context

    return client_tls_context(insecure=args.insecure, cafile=args.cafile)


def _add_connect(sub: Any) -> None:
    p = sub.add_parser(
        "connect",
        help="netcat-like client: stdin to the socket, the socket to stdout",
        description="Connect to a TCP, TLS, Unix or UDP service and relay stdin/stdout.",
        epilog=EPILOG_CONNECT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("address", nargs="?", metavar="HOST:PORT",
                   help="where to connect, as HOST:PORT or, like nc, HOST PORT "
                   "([::1]:PORT or ::1 PORT for IPv6); omit with --unix")
    p.add_argument("port", nargs="?", metavar="PORT",
                   help="the port, when given apart from the host (nc style: HOST PORT)")
    p.add_argument("--unix", metavar="PATH", help="connect to a Unix socket")
    p.add_argument("--udp", action="store_true", help="send datagrams instead of a stream")
    _add_client_tls(p, server_name=True)
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="connect timeout in seconds (default 10)")
    p.add_argument("--wait", type=float, default=1.0, metavar="S",
                   help="UDP and TLS (which cannot half-close): seconds of quiet after the "
                   "end of input before exiting (default 1)")


def _cmd_connect(args: argparse.Namespace) -> int:
    from sockhub.client.address import parse_address
    from sockhub.client.connect import connect_stream, connect_udp
    from sockhub.engine import loops

    if (args.address is None) == (args.unix is None):
        raise ConfigError("give HOST:PORT or --unix PATH")
    tls = _client_tls(args)
    if tls is not None and args.udp:
        raise ConfigError("--udp and --tls do not go together")
    if args.unix:
        if args.udp:
            raise ConfigError("--udp and --unix do not go together")
        server_name = args.server_name or ("localhost" if tls else None)
        return loops.run(connect_stream(None, None, unix=args.unix, tls=tls,
                                        server_hostname=server_name, timeout=args.timeout,
                                        wait=args.wait))
    host, port = parse_address(args.address, args.port)
    if args.udp:
        return loops.run(connect_udp(host, port, wait=args.wait))
    server_name = args.server_name if tls else None
    return loops.run(connect_stream(host, port, tls=tls, server_hostname=server_name,
                                    timeout=args.timeout, wait=args.wait))


def _add_ping(sub: Any) -> None:
    p = sub.add_parser(
        "ping",
        help="round-trip times to an echo service, like ping",
        description="Send probes to an echo service (TCP or UDP) and print round-trip\n"
        "times, then a summary. A reply that differs from the probe counts as lost.\n\n"
        "Exit status: 0 if every probe was answered with its own bytes (with --connect:\n"
        "every handshake completed); 1 if any probe was lost or answered wrongly, or\n"
        "none could be sent; 2 for bad arguments.",
        epilog="examples:\n  sockhub ping 127.0.0.1:9000\n  sockhub ping 127.0.0.1 9000 --udp -c 10"
        "\n  sockhub ping example.org:443 --connect",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("address", metavar="HOST:PORT", help="the service, as HOST:PORT or HOST PORT")
    p.add_argument("port", nargs="?", metavar="PORT",
                   help="the port, when given apart from the host (HOST PORT)")
    p.add_argument("--udp", action="store_true", help="probe a UDP echo service")
    p.add_argument("--connect", action="store_true",
                   help="time TCP handshakes instead (any TCP service)")
    p.add_argument("-c", "--count", type=int, default=4, metavar="N",
                   help="probes to send (default 4; 0 = until interrupted)")
    p.add_argument("-i", "--interval", type=float, default=1.0, metavar="S",
                   help="seconds between probes (default 1)")
    p.add_argument("-W", "--timeout", type=float, default=2.0, metavar="S",
                   help="seconds to wait for each answer (default 2)")
    p.add_argument("-s", "--size", type=int, default=32, metavar="BYTES",
                   help="probe size (default 32, at least 16)")


def _cmd_ping(args: argparse.Namespace) -> int:
    from sockhub.client.address import parse_address
    from sockhub.client.ping import ping
    from sockhub.engine import loops

    host, port = parse_address(args.address, args.port)
    if args.udp and args.connect:
        raise ConfigError("--connect is for TCP only")
    return loops.run(ping(host, port, udp=args.udp, connect_only=args.connect,
                          count=args.count or None, interval=args.interval,
                          timeout=args.timeout, size=args.size))


def _add_bench(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="load generators (bench echo, bench chat)",
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
        epilog="example:\n  sockhub bench chat 127.0.0.1:9999 --clients 100 --senders 10 "
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
    c.add_argument("--room", default="#bench", help="room to use (default #bench)")
    c.add_argument("--mode", choices=("line", "ncat", "irc"), default="line",
                   help="line: sockhub's line door; ncat: 'ncat --chat' (raw lines); "
                   "irc: any IRC server (PRIVMSG to the room; echo-message if offered)")
    c.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="give up after this many seconds (default 60)")
    c.add_argument("--json", action="store_true", help="print one JSON object instead")


def _cmd_bench(args: argparse.Namespace) -> int:
    from sockhub.client.address import parse_hostport
    from sockhub.client.bench import bench_echo

    host, port = parse_hostport(args.address)
    if args.bench_kind == "chat":
        from sockhub.client.chatbench import bench_chat

        try:
            chat = bench_chat(host, port, clients=args.clients, senders=args.senders,
                              messages=args.messages, rate=args.rate, room=args.room,
                              mode=args.mode, timeout=args.timeout)
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


def _add_chat(sub: Any) -> None:
    p = sub.add_parser(
        "chat",
        help="terminal chat client for the chat hub",
        description="Chat in a terminal: incoming messages print above the line you are "
        "typing; commands complete with Tab; the client reconnects with back-off when the "
        "server goes away. /quit leaves.",
        epilog="example:\n  sockhub chat 127.0.0.1:9999 --nick alice",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("address", metavar="HOST:PORT", nargs="?", default="127.0.0.1:9999",
                   help="the chat server's line door (default 127.0.0.1:9999)")
    p.add_argument("--nick", metavar="NAME", help="nick to use (default: a guest nick)")
    _add_client_tls(p, server_name=False)
    p.add_argument("--no-reconnect", action="store_true",
                   help="exit when the connection is lost instead of reconnecting")


def _cmd_chat(args: argparse.Namespace) -> int:
    from sockhub.client.address import parse_hostport
    from sockhub.client.chat import run_chat
    from sockhub.engine import loops

    host, port = parse_hostport(args.address)
    tls = _client_tls(args)
    return loops.run(run_chat(host, port, nick=args.nick, tls=tls,
                              reconnect=not args.no_reconnect), "asyncio")


EPILOG_EXEC = """\
Runs CMD on the server directly, without a shell (so '*' or '$HOME' reach it
as they are), copies its stdout and stderr to this one's as they arrive,
forwards standard input (unless -n), and exits with the command's exit
status: 128+N if signal N killed it, 124 if it timed out, 125 if it passed
the server's output limit, 126 if it was refused, 127 if not found, 130 if
interrupted, 255 if the connection or the login failed. Ctrl-C stops the
remote command. With no CMD, reads one command per line ('exit' quits).
Options go before the '--' that starts the command.

examples:
  sockhub exec 127.0.0.1:9001 -- uname -a
  sockhub exec 10.0.0.5:9001 --tls --cafile ca.pem --token-file tok -- df -h /
  tar c src | sockhub exec 127.0.0.1:9001 -- tar x -C /tmp/copy
  sockhub exec 127.0.0.1:9001 --shell -- 'ls | wc -l'     (server: --allow-shell)
  sockhub exec 127.0.0.1:9001                              (interactive)
"""


class _CommandAfterDashes(argparse.ArgumentParser):
    """``sockhub exec``'s parser: every word after the first ``--`` is the remote command.

    argparse alone would read the command's own options (``ls -l``) as ours.
    """

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> Any:
        words = list(sys.argv[1:] if args is None else args)
        command: list[str] = []
        if "--" in words:
            cut = words.index("--")
            words, command = words[:cut], words[cut + 1 :]
        parsed, extras = super().parse_known_args(words, namespace)
        parsed.remote_command = [*parsed.remote_command, *command]
        return parsed, extras


def _add_exec(sub: Any) -> None:
    p = sub.add_parser(
        "exec",
        help="run a command on a sockhub exec server, with its exit status",
        description="Run a command on a 'sockhub serve exec' server.",
        epilog=EPILOG_EXEC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.__class__ = _CommandAfterDashes
    p.add_argument("address", metavar="HOST:PORT", help="the exec server ([::1]:PORT for IPv6)")
    p.add_argument("remote_command", nargs="*", metavar="CMD",
                   help="after '--': the command and its arguments; none for a prompt")
    p.add_argument("--token-file", metavar="FILE",
                   help="the server's token, mode 0600 (default "
                   "~/.local/state/sockhub/exec-token, where a local server puts it)")
    p.add_argument("-n", "--no-stdin", action="store_true",
                   help="give the command empty input instead of this standard input")
    p.add_argument("--shell", action="store_true",
                   help="run the command (or each prompt line) as sh -c TEXT; the server "
                   "needs --allow-shell")
    _add_client_tls(p, server_name=True)
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to connect and log in (default 10)")


def _cmd_exec(args: argparse.Namespace) -> int:
    from sockhub.client.address import parse_hostport
    from sockhub.client.exec import exec_main
    from sockhub.engine import loops
    from sockhub.services.exec import default_token_path, read_token

    host, port = parse_hostport(args.address)
    token = read_token(args.token_file or default_token_path())
    tls = _client_tls(args)
    return loops.run(exec_main(host, port, args.remote_command, token=token, tls=tls,
                               server_hostname=args.server_name if tls else None,
                               forward_stdin=not args.no_stdin, shell=args.shell,
                               connect_timeout=args.connect_timeout))


def _add_passwd(sub: Any) -> None:
    sub.add_parser(
        "passwd",
        help="print a password hash for an operator account",
        description="Read a password (twice, without echo, on a terminal; one line from "
        "standard input otherwise) and print its scrypt hash, to paste into the config as "
        "an operator's password or pass to --oper NAME=HASH.",
    )


def _cmd_passwd(args: argparse.Namespace) -> int:
    import getpass

    from sockhub.passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ConfigError("an empty password is not allowed")
    print(hash_password(password))
    return 0


COMMANDS = {
    "serve": _cmd_serve,
    "chat": _cmd_chat,
    "passwd": _cmd_passwd,
    "connect": _cmd_connect,
    "ping": _cmd_ping,
    "bench": _cmd_bench,
    "exec": _cmd_exec,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sockhub",
        description="Socket services on asyncio: servers, a netcat-like client, "
        "ping and load generators.",
        epilog="Run 'sockhub COMMAND --help' for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"sockhub {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_serve(sub)
    _add_connect(sub)
    _add_ping(sub)
    _add_bench(sub)
    _add_chat(sub)
    _add_exec(sub)
    _add_passwd(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sockhub`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"sockhub {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
