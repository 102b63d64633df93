"""One hotline caller walking a menu: keys in, prompts out, timers on the injected clock.

Sans-I/O like every protocol here: bytes in through ``receive_data``,
lines out through ``send``, time only through ``self.clock``. The rules,
after FreeSWITCH's ``ivr.conf``:

* A single-digit choice acts on the key. In a node with multi-digit keys,
  digits gather while they could still become a longer key, and the entry
  ends with ``#``, Enter, a pause of ``digit_timeout`` seconds, or as soon
  as no longer key could match.
* ``*`` goes back one menu, ``#`` repeats the prompt, ``9`` goes to the
  top (unless the node uses 9 itself); ``exit`` (or ``quit``) hangs up.
* A key that is no choice is a failure: the caller hears ``invalid`` and
  the prompt again; the ``max_failures``-th failure in a row hangs up.
* No key for ``timeout`` seconds after a prompt is a timeout: the caller
  hears ``timeout`` and the prompt again; the ``max_timeouts``-th in a row
  hangs up. A valid choice resets both counts.
* An ``operator`` choice calls :meth:`hand_off`, which a door overrides;
  the caller is then in line mode (:meth:`call_line`) until the door calls
  :meth:`resume_menu`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sockhub.codec.lines import encode_line
from sockhub.protocols.base import ConnectionInfo, Protocol, Timer
from sockhub.protocols.ivr.keys import Bad, CallerInput, Enter, Event, Key, Line, Word
from sockhub.protocols.ivr.menu import Action, Menu, Node
from sockhub.protocols.ivr.telnet import TelnetFilter

HANG_UP_WORDS = ("exit", "quit", "bye")
#: The longest line or word a caller may type when the server sets no --max-line.
MAX_LINE = 8192


@dataclass(frozen=True)
class CallerSettings:
    """Timers and limits of a menu walk (the ``ivr_*`` chat options)."""

    timeout: float = 10.0
    digit_timeout: float = 3.0
    max_timeouts: int = 3
    max_failures: int = 3


class CallerProtocol(Protocol):
    """A caller in a menu. Override :meth:`hand_off` and :meth:`call_line` to talk to humans."""

    counts_messages = True

    def __init__(self, menu: Menu, settings: CallerSettings) -> None:
        super().__init__()
        self.menu = menu
        self.settings = settings
        self.telnet = TelnetFilter()
        self.input = CallerInput(self.info.limits.max_line or MAX_LINE)
        self.node: Node = menu.node(menu.start)
        self.stack: list[str] = []
        #: What the caller chose on the way: ``["main 2", "billing 0"]``.
        self.path: list[str] = []
        self.digits = ""
        self.failures = 0
        self.timeouts = 0
        self.in_call = False
        self._prompt_timer: Timer | None = None
        self._digit_timer: Timer | None = None

    @property
    def texts(self) -> dict[str, str]:
        return self.menu.texts

    # The engine's calls ---------------------------------------------------------------

    def connection_made(self, info: ConnectionInfo) -> None:
        super().connection_made(info)
        self.input = CallerInput(info.limits.max_line or MAX_LINE)
        self.prompt()

    def receive_data(self, data: bytes) -> None:
        data, reply = self.telnet.feed(data)
        if reply:
            self.send(reply)
        if not data:
            return
        self.input.feed(data)
        while not self._closing:
            event = self.input.next_event()
            if event is None:
                break
            self.active = True
            self._event(event)

    def receive_eof(self) -> None:
        self.close()

    def connection_lost(self) -> None:
        self._stop_timers()

    def closing_notice(self, reason: str) -> None:
        self.say(f"error: {reason}")

    # Output -------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Send text, one CRLF line per line of it."""
        for line in text.splitlines() or [""]:
            self.send(encode_line(line))

    def hang_up(self, text: str | None = None) -> None:
        self.say(text if text is not None else self.texts["goodbye"])
        self._stop_timers()
        self.close()

    # Hooks for a door ---------------------------------------------------------------

    def hand_off(self) -> None:
        """The caller chose a human. Without a hub to hand them to: say goodbye."""
        self.hang_up()

    def call_line(self, text: str) -> None:
        """A line the caller typed while talking to a human."""

    def path_text(self) -> str:
        return " > ".join(self.path) or "(none)"

    # The menu -------------------------------------------------------------------------

    def prompt(self) -> None:
        """Say the current node's prompt and wait for a key."""
        self.digits = ""
        self.say(self.node.prompt)
        self._arm_prompt_timer()

    def resume_menu(self) -> None:
        """Back from a call (or the queue) to the node the caller left."""
        self.in_call = False
        self.input.lines = False
        self.failures = self.timeouts = 0
        self.prompt()

    def _event(self, event: Event) -> None:
        if isinstance(event, Bad):
            self.say(f"error: {event.problem}")
        elif self.in_call:
            if isinstance(event, Line):
                self.call_line(event.text)
        elif isinstance(event, Key):
            self._key(event.key)
        elif isinstance(event, Enter):
            if self.digits:
                self._finish_entry()
        elif isinstance(event, Word):
            if event.text.lower() in HANG_UP_WORDS:
                self.hang_up()
            else:
                self._invalid()

    def _key(self, key: str) -> None:
        self._cancel(self._prompt_timer)
        if self.digits:
            if key == "#":
                self._finish_entry()
            elif key == "*":
                self.digits = ""
                self._back()
            else:
                self.digits += key
                self._grow()
            return
        if key.isdigit() and (self.node.match(key) or self.node.may_grow(key)):
            self.digits = key
            self._grow()
        elif key == "*":
            self._back()
        elif key == "#":
            self.prompt()
        elif key == "9":
            self.stack.clear()
            self.node = self.menu.node(self.menu.start)
            self.prompt()
        else:
            self._invalid()

    def _grow(self) -> None:
        """Act once the entry can only be what it is; else wait for more or a pause."""
        self._cancel(self._digit_timer)
        if self.node.may_grow(self.digits):
            self._digit_timer = self.clock.call_later(self.settings.digit_timeout,
                                                      self._finish_entry)
        else:
            self._finish_entry()

    def _finish_entry(self) -> None:
        self._cancel(self._digit_timer)
        digits, self.digits = self.digits, ""
        action = self.node.match(digits)
        if action is None:
            self._invalid()
        else:
            self._act(action, digits)

    def _act(self, action: Action, digits: str) -> None:
        self.failures = self.timeouts = 0
        self.path.append(f"{self.node.label()} {digits}")
        if action.say is not None:
            self.say(action.say.replace("{digits}", digits))
        if action.goto is not None:
            self.stack.append(self.node.name)
            self.node = self.menu.node(action.goto)
            self.prompt()
        elif action.operator:
            self._stop_timers()
            self.in_call = True
            self.input.lines = True
            self.hand_off()
        elif action.hangup:
            self.hang_up()
        else:
            self.prompt()

    def _back(self) -> None:
        if self.stack:
            self.node = self.menu.node(self.stack.pop())
        self.prompt()

    def _invalid(self) -> None:
        self.failures += 1
        if self.failures >= self.settings.max_failures:
            self.hang_up(self.texts["invalid"] + "\n" + self.texts["too_many"])
            return
        self.say(self.texts["invalid"])
        self.prompt()

    def _prompt_timed_out(self) -> None:
        self._prompt_timer = None
        if self.in_call or self._closing:
            return
        self.timeouts += 1
        if self.timeouts >= self.settings.max_timeouts:
            self.hang_up(self.texts["timeout"] + "\n" + self.texts["goodbye"])
            return
        self.say(self.texts["timeout"])
        self.prompt()

    # Timers -------------------------------------------------------------------------

    def _arm_prompt_timer(self) -> None:
        self._cancel(self._prompt_timer)
        self._prompt_timer = self.clock.call_later(self.settings.timeout, self._prompt_timed_out)

    def _stop_timers(self) -> None:
        self._cancel(self._prompt_timer)
        self._cancel(self._digit_timer)
        self._prompt_timer = self._digit_timer = None

    @staticmethod
    def _cancel(timer: Timer | None) -> None:
        if timer is not None:
            timer.cancel()
