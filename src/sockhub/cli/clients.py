"""The client commands: ``sockhub connect``, ``ping`` and ``chat``, and their TLS options."""

from __future__ import annotations

import argparse
import ssl

from sockhub.cli.summaries import SUMMARIES
from sockhub.errors import ConfigError


def chat_address() -> str:
    """The chat line door on this host, at the registry's port (imported only when needed)."""
    from sockhub.services.registry import SERVICES

    return f"127.0.0.1:{SERVICES['chat'].default_port}"


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


def add_client_tls(p: argparse.ArgumentParser, *, server_name: bool) -> None:
    """The TLS options every client command shares."""
    p.add_argument("--tls", action="store_true", help="use TLS, verifying the server")
    p.add_argument("--cafile", metavar="PEM", help="trust these CA certificates (implies --tls)")
    p.add_argument("--insecure", action="store_true",
                   help="TLS without checking the certificate (implies --tls)")
    if server_name:
        p.add_argument("--server-name", metavar="NAME", help="TLS server name to check (SNI)")


def client_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """A client TLS context if any TLS option was given, else None."""
    if not (args.tls or args.cafile or args.insecure):
        return None
    from sockhub.client.address import client_tls_context

    return client_tls_context(insecure=args.insecure, cafile=args.cafile)


def add_connect(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "connect",
        help=SUMMARIES["connect"],
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
    add_client_tls(p, server_name=True)
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="connect timeout in seconds (default 10)")
    p.add_argument("--wait", type=float, default=1.0, metavar="S",
                   help="UDP and TLS (which cannot half-close): seconds of quiet after the "
                   "end of input before exiting (default 1)")
    p.set_defaults(run=_cmd_connect)


def _cmd_connect(args: argparse.Namespace) -> int:
    from sockhub.client.address import parse_address
    from sockhub.client.connect import connect_stream, connect_udp
    from sockhub.engine import loops

    if (args.address is None) == (args.unix is None):
        raise ConfigError("give HOST:PORT or --unix PATH")
    tls = client_tls(args)
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


def add_ping(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ping",
        help=SUMMARIES["ping"],
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
    p.set_defaults(run=_cmd_ping)


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


def add_chat(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "chat",
        help=SUMMARIES["chat"],
        description="Chat in a terminal: incoming messages print above the line you are "
        "typing; commands complete with Tab; the client reconnects with back-off when the "
        "server goes away. /quit leaves.",
        epilog=f"example:\n  sockhub chat {chat_address()} --nick alice",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    address = chat_address()
    p.add_argument("address", metavar="HOST:PORT", nargs="?", default=address,
                   help=f"the chat server's line door (default {address})")
    p.add_argument("--nick", metavar="NAME", help="nick to use (default: a guest nick)")
    add_client_tls(p, server_name=False)
    p.add_argument("--no-reconnect", action="store_true",
                   help="exit when the connection is lost instead of reconnecting")
    p.set_defaults(run=_cmd_chat)


def _cmd_chat(args: argparse.Namespace) -> int:
    from sockhub.client.address import parse_hostport
    from sockhub.client.chat import run_chat
    from sockhub.engine import loops

    host, port = parse_hostport(args.address)
    tls = client_tls(args)
    return loops.run(run_chat(host, port, nick=args.nick, tls=tls,
                              reconnect=not args.no_reconnect), "asyncio")
