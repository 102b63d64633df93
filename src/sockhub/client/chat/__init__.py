"""``sockhub chat``: a terminal client for the chat hub's line door.

Theory of operation
-------------------

Two layers, as in the rest of sockhub (see shared/DESIGN.md):

* **Sans-I/O**, one module per job. :mod:`.lines`: :func:`~.lines.parse_server_line`
  turns one server line (docs/chat-line.md) into a :class:`~.lines.ServerLine`:
  a kind plus the spans of its time, room, nicks and text. :mod:`.render`
  colours those spans. :mod:`.state`: :class:`~.state.ChatState` follows the
  conversation (own nick, current room, who is in which room) for the
  prompt, the completer and reconnection. :mod:`.complete` proposes Tab
  completions. None of it touches a socket or a terminal, so tests feed it
  strings.
* **I/O**. :mod:`.client`: :class:`~.client.ChatClient` owns the connection
  and the reconnect loop (its schedule, :class:`~.client.Backoff`, is pure).
  :mod:`.screens`: a *screen* reads the user's lines and shows server
  lines: :class:`~.screens.PromptScreen` (prompt_toolkit, when stdin and
  stdout are terminals: incoming lines print above the line being typed) or
  :class:`~.screens.PlainScreen` (plain lines in and out, for scripts and pipes).

The client's phases on one connection::

    OFFLINE --connect--> GREETING --"-- enter a nick"/send nick--> REGISTERING
    REGISTERING --"-- you are NICK"--> READY (re-join rooms, send held lines)
    REGISTERING --"error: ..."--> CHOOSING --user types a nick--> READY

Lines typed in GREETING or REGISTERING are held and sent once the server
has answered the nick, so a script's first lines are not taken for nicks;
lines typed while OFFLINE are refused with ``-- not connected`` (never
dropped silently). A ``/quit`` (or the end of piped input) typed then
waits its turn behind them.

Actions (``T #room ** nick text``) and room events (``T #room * nick
joined``) have different markers, so ``/me joined`` cannot pass for a join.
docs/chat-client.md describes the client for users.
"""

from __future__ import annotations

from sockhub.client.chat.client import run_chat

__all__ = ["run_chat"]
