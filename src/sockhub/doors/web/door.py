"""WebDoor: one browser (or web IRC client) connection, HTTP/1.1 first, then maybe a WebSocket.

Theory of operation
-------------------

The engine drives a ``WebDoor`` like any sockhub protocol: bytes in,
bytes out, timers on the injected clock. Inside, two maintained sans-I/O
libraries do the parsing, as in uvicorn's ``websockets_sansio_impl``:

* **HTTP** (h11): requests are answered from the route table in
  ``http.py`` (the page, ``/hello``, ``/healthz``, ``/metrics``), with
  keep-alive and pipelining (:data:`PIPELINE_BATCH` answers per turn of
  the loop). Bad HTTP gets its status and a close: headers over 16 KiB
  431, a malformed request 400, a GET body over 16 KiB 413, a request not
  complete within ``web_header_timeout`` 408, a Host this server is not on
  a loopback connection 421 (DNS rebinding), over :data:`PIPELINE_MAX`
  sent ahead of the answers 429. A connection idle for
  ``web_keepalive_timeout`` between requests is closed.
* **WebSocket**: the handshake is websockets' (its ``ServerProtocol``): a
  ``GET /ws`` with ``Upgrade: websocket`` is rebuilt as bytes and fed to
  it; it checks the handshake and the ``Origin`` (the page's own host, or
  ``--web-origin``) and answers 101 or an error. After the 101 it is
  dropped, and the door speaks RFC 6455 itself (``frames.py``, sans-I/O:
  :meth:`WebDoor._ws_receive`): client frames checked (masking, RSV bits,
  opcodes, control frames: 1002), fragments put back together (a message
  at most ``FRAME_MAX``, pings between fragments not counted: 1009), text
  checked as UTF-8 across fragments (1007), pings answered, the client's
  close echoed and the TCP connection closed. The server's own close (a
  shutdown, a kick, the IRC door's QUIT) sends a close frame and waits up
  to ``web_close_timeout`` for the client's (:meth:`WebDoor._ws_close`);
  a protocol error or a ping timeout hangs up at once. Each complete
  message goes to the language the client chose with
  ``Sec-WebSocket-Protocol``:

  - ``sockhub.v1`` or none: :class:`~sockhub.doors.web.chat_json.JsonChat`;
  - ``text.ircv3.net`` / ``binary.ircv3.net``: an
    :class:`~sockhub.doors.irc.IrcDoor`, hosted here: each frame is fed
    to it as one CRLF-terminated line, and each line it queues leaves as
    one frame (IRCv3 WebSocket), framed as it is queued (:class:`_IrcFrames`:
    this door keeps Protocol's own output queue, which the engine flushes
    inline). It shares this door's clock and wake-up, so its timers, flood
    control and hub deliveries work as on port 6667.

Outgoing frames are built here (no extension is negotiated, so a server
frame is the same bytes for every client): a hub event rendered once is
framed once and the bytes shared by every browser it reaches; only the
first frame of a loop turn wakes the engine (:meth:`WebDoor.push_text`).

Keep-alive: after ``web_ping_interval`` seconds without a frame from the
client the door pings; with nothing back within ``web_ping_timeout``, it
closes with 1001 ``ping timeout`` -- unless the client shows it is reading
a backlog (:meth:`WebDoor._ping_check`): its pong may wait behind our output.
A graceful stop sends every client 1001 ``server shutting down``
(:meth:`closing_notice`). A client that does not read is the engine's to
drop (``write_timeout``, ``write_buffer_max``).
"""

from __future__ import annotations

import logging
import struct
import sys
from collections.abc import Iterable, Sequence

import h11
from websockets.http11 import Request as WsRequest
from websockets.server import ServerProtocol
from websockets.typing import Origin, Subprotocol

from sockhub.doors.api import ChatApi, LoginResult
from sockhub.doors.irc import IrcDoor, WebSocketIrcDoor
from sockhub.doors.web.chat_json import FRAME_MAX, JsonChat
from sockhub.doors.web.frames import (
    BINARY,
    CLOSE,
    GOING_AWAY,
    INTERNAL_ERROR,
    NORMAL,
    TEXT,
    ClientFrames,
    Close,
    Failure,
    Ping,
    close_frame,
    frame,
    ping_frame,
    pong_frame,
)
from sockhub.doors.web.http import (
    BODY_MAX,
    HEADER_MAX,
    SECURITY_HEADERS,
    Reply,
    host_allowed,
    route,
    text_reply,
)
from sockhub.doors.web.session import (
    ACCOUNT_BODY_MAX,
    ACCOUNT_PATHS,
    JSON,
    SESSION_SECONDS,
    clear_cookie,
    cookie_token,
    credentials,
    json_reply,
    origin_allowed,
    session_cookie,
)
from sockhub.hub import HubError
from sockhub.protocols.base import ConnectionInfo, Protocol, Timer

log = logging.getLogger("sockhub.web")
#: websockets' own log, for the handshake it judges: its INFO lines are noise here.
_ws_log = logging.getLogger("sockhub.web.websockets")
_ws_log.setLevel(logging.WARNING)

JSON_PROTOCOL = "sockhub.v1"
IRC_TEXT = "text.ircv3.net"
IRC_BINARY = "binary.ircv3.net"
SUBPROTOCOLS = (JSON_PROTOCOL, IRC_TEXT, IRC_BINARY)

def web_refusal(reason: str) -> bytes:
    """What a client refused at the door (server full) is told: a 503."""
    reply = text_reply(503, f"503 Service Unavailable: {reason}", close=True)
    head = b"HTTP/1.1 503 " + reply.reason + b"\r\n"
    head += b"".join(f"{k}: {v}\r\n".encode() for k, v in reply.all_headers())
    return head + b"\r\n" + reply.body


def _choose_subprotocol(protocol: ServerProtocol,
                        offered: Sequence[Subprotocol]) -> Subprotocol | None:
    """The first language the client offers that we speak; none: the JSON chat."""
    for name in offered:
        if name in SUBPROTOCOLS:
            return name
    return None


class _HostedIrc(WebSocketIrcDoor):
    """The IRC door a WebSocket hosts (IRCv3 WebSocket): it tells its host when it closes."""

    __slots__ = ("web",)

    web: WebDoor

    def close(self) -> None:
        closing = self._closing
        super().close()
        if not closing:
            self.web._irc_closing()


class _IrcFrames(list[bytes]):
    """The hosted IRC door's output queue: each chunk it queues leaves as frames at once.

    Its lines become frames in the web door's own queue (one a line; a hub
    event's line, the same bytes for every IRC client, framed once), so the
    web door keeps Protocol's output queue and the engine its inlined flush
    for every web client (issue 16: overriding ``data_to_send`` for this cost
    every JSON browser the engine's slower ``flush``, py-spy N=100:
    ``WebDoor.data_to_send`` 4.1% own, ``StreamConnection.flush`` ~4% beside
    the write). Nothing is kept here. Its length is the chunks queued since the
    host's queue was last taken, as the IRC door's own queue would count
    them: the IRC door wakes the engine on the first (``len(out) == 1``).
    """

    __slots__ = ("host", "queued")

    def __init__(self, host: WebDoor) -> None:
        super().__init__()
        self.host = host
        self.queued = 0

    def append(self, chunk: bytes, /) -> None:
        host = self.host
        if not host._live:  # closing, or closed: nothing more leaves (as websockets would)
            return
        out = host._outgoing
        self.queued = self.queued + 1 if out else 1
        out.extend(_frames(chunk, BINARY if host.binary else TEXT))

    def extend(self, chunks: Iterable[bytes], /) -> None:
        for chunk in chunks:
            self.append(chunk)

    def __len__(self) -> int:
        return self.queued if self.host._outgoing else 0


#: Where a WebSocket upgrade is accepted.
WEBSOCKET_PATHS = frozenset({"/ws", "/"})
#: Pipelined requests answered per turn of the event loop: the rest wait for
#: the next turn (or for the output to drain), so one client cannot hold the
#: server, nor queue answers past ``write_buffer_max`` unchecked.
PIPELINE_BATCH = 8
#: The most a client may send ahead of our answers (429 and a close past it).
PIPELINE_MAX = 64 * 1024


class WebDoor(Protocol):
    """One web client: HTTP requests, or one WebSocket speaking JSON chat or IRC."""

    __slots__ = (
        "_backlog", "_body", "_body_size", "_drained", "_held",
        "_last_seen", "_live", "_paused", "_ping_sent", "_ping_timer", "_request", "_timer",
        "_unanswered", "_waiting",
        "binary", "chat", "http", "irc", "json", "ws",
    )

    counts_messages = True

    def __init__(self, chat: ChatApi) -> None:
        super().__init__()
        self.chat = chat
        #: None once the connection is a WebSocket: nothing parses HTTP on it again.
        self.http: h11.Connection | None = h11.Connection(
            h11.SERVER, max_incomplete_event_size=HEADER_MAX)
        self._request: h11.Request | None = None
        self._body_size = 0
        #: The body of an account request (session.py), kept; others are dropped.
        #: bytes, not a bytearray: most connections never POST, and b"" is one shared
        #: object (a bytearray each was 56 B of every idle WebSocket, issue 16).
        self._body = b""
        #: A wrong password's answer waits (the limiter's delay): no request is read meanwhile.
        self._held = False
        self._timer: Timer | None = None
        self._waiting = "headers"  # or "idle" (between requests), or "" (a WebSocket)
        #: The client's frames once the connection is a WebSocket (frames.py).
        self.ws: ClientFrames | None = None
        #: The WebSocket is open and no close frame was sent: frames may be queued,
        #: messages read. False once ours is sent (or the connection hangs up).
        self._live = False
        self.json: JsonChat | None = None
        self.irc: IrcDoor | None = None
        self.binary = False
        self._last_seen = 0.0
        self._ping_sent: float | None = None
        #: Paused output drained (resume_writing) since the keep-alive last
        #: judged (_ping_check): evidence the client reads; queued output is not.
        self._drained = False
        self._ping_timer: Timer | None = None
        # Pipelining: bytes received since h11 last ran out of input, whether
        # requests wait for the next turn (its timer), whether output is paused.
        self._unanswered = 0
        self._backlog: Timer | None = None
        self._paused = False

    # Engine side ------------------------------------------------------------

    def connection_made(self, info: ConnectionInfo) -> None:
        super().connection_made(info)
        self._arm("headers")

    def receive_data(self, data: bytes) -> None:
        try:
            if self.ws is not None:
                self._ws_receive(data)
                return
            if self._waiting == "idle":  # a new request begins
                self._arm("headers")
            self._unanswered += len(data)
            if self._unanswered > PIPELINE_MAX:
                log.debug("web: %s sent over %d bytes ahead of our answers", self.info.peer,
                          PIPELINE_MAX)
                self._refuse(429)
                return
            assert self.http is not None  # None only once self.ws is set
            self.http.receive_data(data)
            self._http_events()
        except Exception:
            # A bug must cost this connection, never the server.
            log.exception("web: failed on input from %s", self.info.peer)
            self._abandon()

    def receive_eof(self) -> None:
        # A WebSocket's client gone without a close frame (RFC 6455 §7.1.5: 1006):
        # nothing to answer, nothing to wait for.
        self._hang_up()

    def close(self) -> None:
        """Hang up; an open WebSocket first sends a close frame (1001) and waits for the
        client's (:meth:`_ws_close`): the engine calls this after ``closing_notice``."""
        if self.ws is not None and not self._closing:
            if self._live:
                self._ws_close(GOING_AWAY, "")
            return  # the close handshake is under way
        self._hang_up()

    def connection_lost(self) -> None:
        self._held = False  # a login being checked is not answered (_identified)
        for timer in (self._timer, self._ping_timer, self._backlog):
            if timer is not None:
                timer.cancel()
        if self.json is not None:
            self.json.lost()
        if self.irc is not None:
            self.irc.connection_lost()

    def closing_notice(self, reason: str) -> None:
        """A graceful stop (or the engine's idle limit): WebSocket clients get 1001 and why.

        A failure here costs this client its notice, never the others theirs
        (the engine tells every connection in turn).
        """
        if self.ws is None:
            return
        try:
            if self.irc is not None:
                self.irc.closing_notice(reason)
                self._pump_irc()
            self._ws_close(GOING_AWAY, reason)
        except Exception:
            log.exception("web: failed to tell %s the server is closing", self.info.peer)
            self._hang_up()

    def pause_writing(self) -> None:
        self._paused = True  # pipelined requests wait until the output drains

    def resume_writing(self) -> None:
        self._paused = False
        self._drained = True  # the client read: its output drained (_ping_check)
        if self._backlog is not None:
            self._backlog.cancel()
        self._continue_http()

    # HTTP -------------------------------------------------------------------

    def _arm(self, waiting: str) -> None:
        """Start the deadline for what we now wait for: a request's headers, or the next one."""
        if self._timer is not None:
            self._timer.cancel()
        self._waiting = waiting
        settings = self.chat.settings
        delay = settings.web_header_timeout if waiting == "headers" else (
            settings.web_keepalive_timeout)
        self._timer = self.clock.call_later(delay, self._expired)

    def _expired(self) -> None:
        self._timer = None
        if self._closing or self.ws is not None:
            return
        if self._waiting == "headers":
            log.debug("web: %s sent no complete request in time", self.info.peer)
            self._send_reply(text_reply(408, close=True))
        self.close()

    def _continue_http(self) -> None:
        """The next turn for pipelined requests that waited (a 0-second timer, or a drain)."""
        self._backlog = None
        if self._closing or self.ws is not None or self._paused:
            return
        try:
            self._http_events()
        except Exception:
            log.exception("web: failed on input from %s", self.info.peer)
            self._abandon()

    def _http_events(self) -> None:
        http = self.http
        if http is None:
            return
        answered = 0
        while not self._closing and self.ws is None:
            if self._held:  # a login's answer is due first (_wrong_password)
                return
            if answered >= PIPELINE_BATCH or self._paused:
                # The rest on the next turn of the loop, or once the output drains.
                if self._backlog is None and not self._paused:
                    self._backlog = self.clock.call_later(0, self._continue_http)
                return
            try:
                event = http.next_event()
            except h11.RemoteProtocolError as exc:
                # 400, or 431 for a head over max_incomplete_event_size
                self._refuse(exc.error_status_hint)
                return
            if event is h11.NEED_DATA:
                self._unanswered = 0  # all read (what is left is an incomplete request)
                return
            if event is h11.PAUSED:
                if http.our_state is h11.DONE and http.their_state is h11.DONE:
                    http.start_next_cycle()
                    continue
                return
            kind = type(event)
            if kind is h11.Request:
                assert isinstance(event, h11.Request)
                # h11 caps what it buffers of an incomplete head; a whole head
                # that arrived in one read is measured here.
                size = len(event.method) + len(event.target) + 12 + sum(
                    len(k) + len(v) + 4 for k, v in event.headers.raw_items())
                if size > HEADER_MAX:
                    self._refuse(431)
                    return
                framing = _body_framing_problem(event)
                if framing:
                    self._refuse(framing)
                    return
                self._request, self._body_size = event, 0
                self._body = b""
                self.active = True
            elif kind is h11.Data:
                assert isinstance(event, h11.Data)
                self._body_size += len(event.data)
                if self._body_size > BODY_MAX:
                    self._refuse(413)
                    return
                if self._request is not None and self._request.method == b"POST":
                    if self._body_size > ACCOUNT_BODY_MAX:
                        self._refuse(413)
                        return
                    self._body += event.data
            elif kind is h11.EndOfMessage:
                self._answer()
                answered += 1
            elif kind is h11.ConnectionClosed:
                self.close()
                return

    def _answer(self) -> None:
        request = self._request
        assert request is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        method = request.method.decode("ascii", "replace")
        path = request.target.decode("ascii", "replace")
        settings = self.chat.settings
        if not host_allowed(_header(request, b"host"), local=self.info.local,
                            server_name=settings.server_name, origins=settings.web_origin):
            # DNS rebinding (http.host_allowed): not for a name this server answers to
            log.info("web: refused a request from %s for host %r", self.info.peer,
                     _header(request, b"host")[:100])
            self._send_reply(text_reply(421, "421 Misdirected Request: unknown host",
                                        close=True))
            self.close()
            return
        # The page uses /ws; web IRC clients are often given a bare ws://host:port,
        # so a WebSocket upgrade of / is the same endpoint (a plain GET / is the page).
        if path.split("?", 1)[0] in WEBSOCKET_PATHS and method == "GET" and _is_upgrade(request):
            self._upgrade(request)
            return
        if path.split("?", 1)[0] in ACCOUNT_PATHS:
            self._account_request(method, path.split("?", 1)[0], request)
            return
        reply = route(method, path, shutting_down=self.chat.shutting_down,
                      now=self.clock.time())
        self._finish(reply, head=method == "HEAD")

    def _finish(self, reply: Reply, *, head: bool = False) -> None:
        """Send the answer to the request in hand; then close, or wait for the next one."""
        self._send_reply(reply, head=head)
        http = self.http
        assert http is not None  # a WebSocket returned above
        if http.our_state is h11.MUST_CLOSE or reply.close:
            self.close()
            return
        self._arm("idle")
        if http.our_state is h11.DONE and http.their_state is h11.DONE:
            http.start_next_cycle()

    # Accounts: the page's login (session.py) -----------------------------------

    def _account_request(self, method: str, path: str, request: h11.Request) -> None:
        """``GET /session``, ``POST /login``, ``/register``, ``/logout`` (docs/web-protocol.md)."""
        chat = self.chat
        secure = self.info.transport == "tls"
        token = cookie_token(_headers(request, b"cookie"))
        if path == "/session":
            if method not in ("GET", "HEAD"):
                self._finish(text_reply(405, headers=[("Allow", "GET, HEAD")]))
                return
            account = chat.session_account(token) if token else None
            self._finish(json_reply(200, {"account": account, "accounts": chat.settings.accounts}),
                         head=method == "HEAD")
            return
        if method != "POST":
            self._finish(text_reply(405, headers=[("Allow", "POST")]))
            return
        if not origin_allowed(_header(request, b"origin"), host=_header(request, b"host"),
                              scheme="https" if secure else "http",
                              origins=chat.settings.web_origin):
            log.info("web: refused a cross-site %s from %s (origin %s)", path, self.info.peer,
                     _header(request, b"origin")[:100] or "none")
            self._finish(json_reply(403, {"error": "cross-site request refused"}))
            return
        if _header(request, b"content-type").partition(";")[0].strip().lower() != JSON:
            self._finish(json_reply(415, {"error": f"send {JSON}"}))
            return
        if path == "/logout":
            if token:
                chat.session_end(token)
            self._finish(json_reply(200, {"account": None},
                                    headers=[("Set-Cookie", clear_cookie(secure=secure))]))
            return
        given = credentials(self._body)
        if isinstance(given, str):
            self._finish(json_reply(400, {"error": given}))
            return
        name, password = given
        # The password's hash or check (scrypt) runs off the loop; nothing else
        # this connection sent is read until its answer is given (pipelining).
        self._held = True
        if path == "/register":
            chat.account_register_later(None, name, password, address=self.info.peer,
                                        then=self._registered)
            return
        chat.account_identify_later(name, password, address=self.info.peer,
                                    then=self._identified)

    def _registered(self, result: str | HubError) -> None:
        """The registration's verdict, back on the loop."""
        if self._closing or not self._held:  # hung up meanwhile: no session for no one
            return
        self._held = False
        if isinstance(result, HubError):
            status = 403 if result.code in ("account_disabled", "account_limit") else 400
            self._finish(json_reply(status, {"error": str(result), "code": result.code}))
        else:
            self._logged_in(result)
        self._resume()

    def _identified(self, result: LoginResult) -> None:
        """The login's verdict, back on the loop."""
        if self._closing or not self._held:  # hung up meanwhile: no session for no one
            return
        if result.account is None and result.refusal is None:
            # told late, and nothing else read meanwhile (still held)
            self._timer = self.clock.call_later(result.delay, self._wrong_password)
            return
        self._held = False
        if result.refusal is not None:
            self._finish(json_reply(429, {"error": result.refusal}))
        else:
            assert result.account is not None
            self._logged_in(result.account)
        self._resume()

    def _logged_in(self, account: str) -> None:
        token = self.chat.session_start(account)
        cookie = session_cookie(token, secure=self.info.transport == "tls",
                                max_age=SESSION_SECONDS)
        self._finish(json_reply(200, {"account": account}, headers=[("Set-Cookie", cookie)]))

    def _wrong_password(self) -> None:
        self._timer = None
        self._held = False
        if self._closing:
            return
        self._finish(json_reply(401, {"error": "wrong account name or password"}))
        self._resume()

    def _resume(self) -> None:
        """A held login was answered: send it, then read requests sent meanwhile."""
        self.wake()
        if not self._closing and self._backlog is None:
            self._backlog = self.clock.call_later(0, self._continue_http)

    def _refuse(self, status: int) -> None:
        """Answer ``status`` and close: the request cannot be served, nor the next ones."""
        self._send_reply(text_reply(status, close=True))
        self.close()

    def _send_reply(self, reply: Reply, *, head: bool = False) -> None:
        http = self.http
        if http is None or http.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        headers = reply.all_headers()
        self.send(http.send(h11.Response(status_code=reply.status, reason=reply.reason,
                                         headers=headers)) or b"")
        if reply.body and not head:
            self.send(http.send(h11.Data(data=reply.body)) or b"")
        self.send(http.send(h11.EndOfMessage()) or b"")

    # The WebSocket handshake --------------------------------------------------

    def _upgrade(self, request: h11.Request) -> None:
        """Hand the request to websockets: it checks the handshake and the Origin."""
        assert self.http is not None
        trailing = bytes(self.http.trailing_data[0])
        host = _header(request, b"host")
        # The page's own origin: the Host it was sent to, the scheme of this transport.
        scheme = "https" if self.info.transport == "tls" else "http"
        own = [f"{scheme}://{host.lower()}"] if host else []
        origins: list[Origin | None] = [Origin(o) for o in (*own, *self.chat.settings.web_origin)]
        origins.append(None)  # no Origin: not a browser (a library, websocat)
        ws = ServerProtocol(origins=origins, subprotocols=[Subprotocol(s) for s in SUBPROTOCOLS],
                            select_subprotocol=_choose_subprotocol, logger=_ws_log)
        # websockets parses the handshake itself: give it the request's bytes, as
        # uvicorn's websockets_sansio_impl does.
        ws.receive_data(b"".join((
            b"GET ", request.target, b" HTTP/1.1\r\n",
            *(name + b": " + value + b"\r\n" for name, value in request.headers.raw_items()),
            b"\r\n",
        )))
        parsed = [e for e in ws.events_received() if isinstance(e, WsRequest)]
        if not parsed:  # h11 took it, websockets did not (e.g. over 128 headers): 400
            log.debug("web: %s sent an upgrade websockets refused", self.info.peer)
            self._refuse(400)
            return
        response = ws.accept(parsed[0])
        for name, value in SECURITY_HEADERS:
            response.headers[name] = value
        ws.send_response(response)
        self._waiting = ""
        # The 101, or the refusal (then b"": websockets asks for the close).
        self._outgoing.extend(chunk for chunk in ws.data_to_send() if chunk)
        if response.status_code != 101:
            log.info("web: refused a WebSocket from %s: %d (origin %s)", self.info.peer,
                     response.status_code, _header(request, b"origin") or "none")
            self._hang_up()
            return
        # websockets' part ends with its 101: from here on the door reads and writes the
        # frames itself (frames.py), and ``ws`` (its ServerProtocol, with its parser,
        # buffers and the parsed request, ~1.5 KiB) goes with this call (issue 16).
        # Nor is h11's state or request read again: ~1 KiB and every header.
        self.ws = ClientFrames(FRAME_MAX)
        self._request = None
        self.http = None
        self._live = not self._closing
        chosen = ws.subprotocol or JSON_PROTOCOL
        now = self.clock.time()
        self._last_seen = now
        self._ping_timer = self.clock.call_later(self.chat.settings.web_ping_interval, self)
        if chosen == JSON_PROTOCOL:
            # A page whose login cookie is live arrives logged in (session.py);
            # the upgrade's Origin was checked above, so no other site can.
            token = cookie_token(_headers(request, b"cookie"))
            self._start_json(self.chat.session_account(token) if token else None)
        else:
            self._start_irc(binary=chosen == IRC_BINARY)
        if trailing:
            self._ws_receive(trailing)

    def _start_json(self, account: str | None = None) -> None:
        peer = self.info.peer
        address = sys.intern(peer.rpartition(":")[0].strip("[]") if ":" in peer else "")
        self.json = JsonChat(self.chat, self, address=address,
                             secure=self.info.transport == "tls", now=self.clock.time(),
                             account=account, clock=self.clock)
        timeout = self.chat.settings.registration_timeout
        if timeout is not None:
            self._timer = self.clock.call_later(timeout, self.json.registration_expired)

    def _start_irc(self, *, binary: bool) -> None:
        irc = _HostedIrc(self.chat)
        irc.web = self
        # Framed as it is queued (_IrcFrames): this door keeps Protocol's own output.
        irc._outgoing = _IrcFrames(self)
        # Its back-pressure is this connection's: a password check (hold) stops reading.
        irc.controls = self.controls
        irc.clock = self.clock
        irc.wake = self.wake
        self.irc, self.binary = irc, binary
        irc.connection_made(self.info)

    # WebSocket frames ---------------------------------------------------------

    def _ws_receive(self, data: bytes) -> None:
        """The client's bytes, read into frames (frames.py), acted on in order.

        A message goes to the language the client chose while the WebSocket
        is open; after our close frame none is read (RFC 6455 §1.4, §5.5.1).
        """
        ws = self.ws
        assert ws is not None
        events = ws.receive(data)
        if not events:
            return
        now = self.clock.time()
        self._last_seen, self._ping_sent = now, None  # alive: a whole frame came
        for event in events:
            if isinstance(event, (str, bytes)):
                if self._live:
                    self._message(event, now)
                continue
            if self._closing:
                break
            if isinstance(event, Ping):
                # §5.5.2: answered with the same payload (§5.5.3), while ours waits too
                self._outgoing.append(pong_frame(event.payload))
            elif isinstance(event, Close):
                # §5.5.1: a close not preceded by ours is answered, echoing its code
                # (and reason); §7.1.1: the server then closes the TCP connection.
                if self._live:
                    self._live = False
                    self._outgoing.append(frame(CLOSE, event.payload))
                self._hang_up()
            elif isinstance(event, Failure):
                # §7.1.7: a close frame saying why, and no waiting for the client's
                log.debug("web: %s failed the WebSocket: %d %s", self.info.peer, event.code,
                          event.reason)
                self._ws_close(event.code, event.reason, wait=False)
            # a Pong: it is alive (§5.5.3), nothing more

    def _message(self, data: str | bytes, now: float) -> None:
        """One complete message from the client, received at ``now``: text (UTF-8 checked,
        RFC 6455 §8.1) as str, binary as bytes."""
        self.active = True
        if self.irc is not None:
            # A text frame is UTF-8 whatever speaks over it (checked: 1007); IRC's own
            # INVALID_UTF8 is for binary frames.
            line = data.encode() if isinstance(data, str) else data
            self.irc.receive_data(line.rstrip(b"\r\n") + b"\r\n")
            self._pump_irc()
            return
        json = self.json
        assert json is not None
        if isinstance(data, str):
            json.receive_text(data, now)
        else:
            json.receive_binary()
        if self._timer is not None and json.user is not None:
            # Welcomed: the registration deadline, its bound method and its wheel entry
            # go now, not when it fires for nothing (~120 B of every idle client, issue 16).
            self._timer.cancel()
            self._timer = None

    def _pump_irc(self) -> None:
        """Close (1000) when the hosted IRC door asked to, after what it said: its lines are
        already framed (:class:`_IrcFrames`)."""
        irc = self.irc
        assert irc is not None
        if irc.close_expected() and self._live:
            self._ws_close(NORMAL, "")

    def _irc_closing(self) -> None:
        """The hosted IRC door closed outside a call of ours (a timer, a hub event): the
        WebSocket closes once that call is over, so a line queued after ``close`` (a QUIT's
        ERROR) still goes first."""
        if self._live:
            self.clock.call_later(0, self._pump_irc)

    def send_text(self, text: str) -> None:
        """Queue one text frame (JsonPeer): an answer, written when the call returns."""
        if self._live:
            self._outgoing.extend(_frames(text, TEXT))

    def push_text(self, text: str) -> None:
        """Queue one text frame of a hub event (JsonPeer) and see it written.

        The per-recipient path of a room's fan-out: a text framed just
        before (the same str for every browser) reuses its bytes, and the
        engine is woken only by the first output queued: output already
        queued has its flush scheduled, or is inside a call the engine
        flushes after (as the IRC door's deliver).
        """
        if not self._live:
            return
        out = self._outgoing
        # (a str is only ever framed as TEXT: the source's identity is enough)
        out.extend(_framed if text is _framed_source else _frames(text, TEXT))
        if len(out) == 1:
            self.wake()

    def push_texts(self, texts: tuple[str, ...]) -> None:
        """Queue several text frames of a run of room messages (JsonPeer) as one piece.

        The same tuple goes to every browser of the room: framed and joined once.
        """
        if not self._live:
            return
        out = self._outgoing
        out.append(_framed_run if texts is _framed_run_source else _frame_run(texts))
        if len(out) == 1:
            self.wake()

    def close_ws(self, code: int, reason: str) -> None:
        """JsonPeer: close the WebSocket with ``code`` and ``reason``."""
        self._ws_close(code, reason)

    def _ws_close(self, code: int, reason: str, *, wait: bool = True) -> None:
        """Close the WebSocket with ``code`` and ``reason``.

        The server's own close (a shutdown, a kick, the IRC door's QUIT) sends a
        close frame and waits for the client's, at most ``web_close_timeout``
        (RFC 6455 §5.5.1, §7.1.2), reading nothing else meanwhile; the client's
        answer, its EOF or the timer hangs up (§7.1.1: the server closes TCP
        first). ``wait=False`` fails the connection (§7.1.7): the close frame,
        then the hang-up at once. A second close sends nothing more.
        """
        if self.ws is None:
            self._hang_up()
            return
        if self._closing:
            return
        if self._live:
            self._live = False
            self._outgoing.append(close_frame(code, reason))
            self.wake()  # when called outside a read (a hub event, a kill)
            if wait:
                if self._ping_timer is not None:
                    self._ping_timer.cancel()
                self._ping_timer = self.clock.call_later(
                    self.chat.settings.web_close_timeout, self._close_unanswered)
                return
        if not wait:
            self._hang_up()

    def _close_unanswered(self) -> None:
        """Our close frame had no answer in time: hang up anyway (RFC 6455 §7.1.1)."""
        self._ping_timer = None
        if not self._closing:
            log.debug("web: %s did not answer the close frame in time", self.info.peer)
            self._hang_up()

    def _hang_up(self) -> None:
        """Close the TCP connection once the output is sent (Protocol.close)."""
        self._live = False
        Protocol.close(self)

    def __call__(self) -> None:
        """The keep-alive timer fired: the door itself is its callback, not a bound
        method the timer holds (64 B of every idle client, issue 16)."""
        self._ping_check()

    def _ping_check(self) -> None:
        """Ping a quiet client; close one that does not answer (docs/web-protocol.md).

        A client shown to be reading a backlog is not judged by the pong's
        delay: while its output is paused (``pause_writing``, past
        ``write_high_water``) the engine does not even read its answer, and
        once it drained such a backlog (``resume_writing``) the ping may
        still sit behind the rest. It gets another ``web_ping_timeout`` per
        such evidence; the engine's limits (``write_timeout``,
        ``write_buffer_max``) drop it if it stops reading. Output merely
        queued to it is no evidence: a peer that vanished in a busy room
        would otherwise stay a member for as long as TCP retransmits.
        """
        self._ping_timer = None
        if self.ws is None or not self._live:
            return
        settings = self.chat.settings
        now = self.clock.time()
        if self._ping_sent is not None:  # nothing came since the ping
            waited = now - self._ping_sent
            if waited >= settings.web_ping_timeout:
                reading, self._drained = self._paused or self._drained, False
                if reading:
                    log.debug("web: %s has not answered a ping for %.0f s, but is reading "
                              "its backlog", self.info.peer, waited)
                    self._ping_timer = self.clock.call_later(settings.web_ping_timeout, self)
                    return
                log.debug("web: %s did not answer a ping", self.info.peer)
                # It answers nothing: no waiting for an answer to our close either.
                self._ws_close(GOING_AWAY, "ping timeout", wait=False)
                return
            self._ping_timer = self.clock.call_later(settings.web_ping_timeout - waited, self)
            return
        quiet = now - self._last_seen
        if quiet < settings.web_ping_interval:
            self._ping_timer = self.clock.call_later(settings.web_ping_interval - quiet, self)
            return
        self._ping_sent = now
        self._drained = False  # only a drain after the ping counts for it
        self._outgoing.append(ping_frame(b"sockhub"))  # RFC 6455 §5.5.2
        self._ping_timer = self.clock.call_later(settings.web_ping_timeout, self)

    def _abandon(self) -> None:
        if self.ws is not None:
            self._ws_close(INTERNAL_ERROR, "internal error", wait=False)
        else:
            self._send_reply(text_reply(500, close=True))
            self.close()


#: The door's one cache, shared by every connection: the last output framed and
#: its frames. A hub event's JSON text is one str for every browser it goes to
#: (chat_json.py), the hosted IRC door's line one bytes object for every IRC
#: client of the same capabilities: each is framed once. No extension
#: (permessage-deflate) is negotiated, so a server's frames do not depend on the
#: connection. Module globals, as the IRC door's cache: the cheaper read.
_framed_source: object = None
_framed_opcode = TEXT
_framed: list[bytes] = []


#: The same for the last run of texts (push_texts): their frames, joined.
_framed_run_source: object = None
_framed_run = b""


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: the hub cleans them, be safe
        return text.encode("utf-8", "replace")


#: A final text frame's first two bytes for each payload size under 126 (RFC 6455 §5.2).
_TEXT_HEADS = [bytes((0x81, size)) for size in range(126)]
#: The header of a final text frame with a 16-bit payload length (a room message's usual size).
_text_head16 = struct.Struct("!BBH").pack


def _frame_run(texts: tuple[str, ...]) -> bytes:
    """One text frame per text, joined; remembered for the next call with the same tuple.

    ``frames.frame(TEXT, ...)`` per text, inlined: a header and the payload
    joined once, not each frame built then joined (its enum and call: about a
    third of the run's framing, cProfile); a test holds the two equal.
    """
    global _framed_run_source, _framed_run
    parts: list[bytes] = []
    add = parts.append
    for text in texts:
        data = _utf8(text)
        size = len(data)
        if size < 126:
            add(_TEXT_HEADS[size])
        elif size < 0x10000:
            add(_text_head16(0x81, 126, size))
        else:
            add(b"\x81\x7f" + size.to_bytes(8, "big"))
        add(data)
    _framed_run = b"".join(parts)
    _framed_run_source = texts
    return _framed_run


def _frames(source: str | bytes, opcode: int) -> list[bytes]:
    """The frames of a text (one frame) or of an IRC chunk (one per line), remembered:
    the next call for the same object and opcode reuses them."""
    global _framed_source, _framed_opcode, _framed
    if source is _framed_source and opcode == _framed_opcode:
        return _framed
    if isinstance(source, str):
        frames = [frame(opcode, _utf8(source))]
    else:
        frames = [frame(opcode, line) for line in source.split(b"\r\n") if line]
    _framed_source, _framed_opcode, _framed = source, opcode, frames
    return frames


def _headers(request: h11.Request, name: bytes) -> list[str]:
    """Every value of a header that may repeat (``Cookie``)."""
    return [value.decode("latin-1") for key, value in request.headers if key == name]


def _header(request: h11.Request, name: bytes) -> str:
    for key, value in request.headers:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _body_framing_problem(request: h11.Request) -> int:
    """The status for a request whose body framing we refuse at once, or 0.

    Both ``Content-Length`` and ``Transfer-Encoding``: 400, a request
    smuggling attempt (RFC 9112 §6.1). A declared length over BODY_MAX: 413
    now, rather than waiting for a body that may never come.
    """
    length = ""
    chunked = False
    for key, value in request.headers:
        if key == b"content-length":
            length = value.decode("ascii", "replace")
        elif key == b"transfer-encoding":
            chunked = True
    if length and chunked:
        return 400
    # h11 checked it is digits; a length of thousands of them is no int() to parse
    if length and (len(length) > 12 or int(length) > BODY_MAX):
        return 413
    return 0


def _is_upgrade(request: h11.Request) -> bool:
    return "websocket" in _header(request, b"upgrade").lower()

