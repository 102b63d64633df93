"""How often a reply to client B overtakes a message sent to B by client A just before.

    python tools/irctest/cross_order.py IRC_PORT [ROUNDS]

Client A sends ``PRIVMSG bb :hi N``, then client B sends ``PING syncN``; it
counts the rounds where B read the PONG before the message. irctest's
synchronisation (``getMessage`` pings the reader and stops at the PONG)
assumes this never happens, and ``websocket.py`` tests fail now and then
when it does. Nothing in IRC orders two connections' lines, and on loopback
the kernel may hand the server B's bytes first. Measured at a447729
(2,000 rounds, the 2-core VM): uvloop 928 (46%), ``--loop asyncio`` 11
(0.55%); a WebSocket B under uvloop 68 (3.4%); ngIRCd 26.1 (C, the config of
benchmarks/irc.py) 974 (49%). So it is not sockhub's: a fast server often
reads B's bytes before A's, and irctest's synchronisation loses that race.
"""

import socket
import sys


def client(port: int, nick: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"NICK {nick}\r\nUSER u 0 * :R\r\n".encode())
    buf = b""
    while b" 422 " not in buf and b" 376 " not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit(f"{nick}: the server closed the connection")
        buf += chunk
    return sock


def main() -> int:
    port = int(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    a, b = client(port, "aa"), client(port, "bb")
    b.settimeout(10)
    overtaken = 0
    for i in range(rounds):
        a.sendall(f"PRIVMSG bb :hi {i}\r\n".encode())
        b.sendall(f"PING sync{i}\r\n".encode())
        buf = b""
        while f"sync{i}".encode() not in buf:
            buf += b.recv(65536)
        if f"hi {i}\r".encode() not in buf.split(f"sync{i}".encode())[0]:
            overtaken += 1
            while f"hi {i}\r".encode() not in buf:  # late, never lost
                buf += b.recv(65536)
    print(f"{overtaken} of {rounds} PONGs overtook the message sent before the PING")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
