"""A caller's input as keys or lines: how a terminal without a keypad is read.

In **key mode** (the menu), each of ``0-9 * #`` is acted on the moment it
arrives, newline or not, as on a phone keypad: the seed's client sends a
key without a newline, nc sends ``1`` then Enter, telnet sends ``1`` then
CR LF (or CR NUL) — all three are the key ``1`` followed (for the last two)
by an :class:`Enter` that the menu ignores unless it is ending a multi-digit
entry. Anything else typed (``exit``) is collected up to the newline and
given as one :class:`Word`. Terminal escape sequences (arrow keys) and other
control bytes are dropped.

In **line mode** (talking to an operator), input is UTF-8 lines.
"""

from __future__ import annotations

from dataclasses import dataclass

KEYS = b"0123456789*#"


@dataclass(frozen=True)
class Key:
    key: str


@dataclass(frozen=True)
class Enter:
    """A newline with nothing typed before it (since the last key)."""


@dataclass(frozen=True)
class Word:
    text: str


@dataclass(frozen=True)
class Line:
    text: str


@dataclass(frozen=True)
class Bad:
    """Input that could not be used (too long, not UTF-8): tell the caller."""

    problem: str


Event = Key | Enter | Word | Line | Bad


class CallerInput:
    """Buffers a caller's bytes; :meth:`next_event` reads one event in the current mode."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.lines = False  # False: key mode
        self._buffer = bytearray()
        self._pos = 0  # bytes of _buffer already read: read by index, never popped (quadratic)
        self._pending = bytearray()  # a word or line being typed
        self._after_cr = False
        self._skipping = False  # dropping an over-long line up to its newline
        self._escape = 0  # 1: after ESC; 2: inside ESC [ ...

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def next_event(self) -> Event | None:
        """The next event, or None until more bytes arrive."""
        buffer = self._buffer
        while self._pos < len(buffer):
            byte = buffer[self._pos]
            self._pos += 1
            if self._after_cr:
                self._after_cr = False
                if byte in (0x0A, 0x00):  # CR LF, CR NUL (RFC 854): one newline
                    continue
            if byte in (0x0D, 0x0A):
                self._after_cr = byte == 0x0D
                event = self._newline()
                if event is not None:
                    return event
                continue
            if self._escape:
                if self._escape == 1:
                    self._escape = 2 if byte == ord("[") else 0
                elif 0x40 <= byte <= 0x7E:
                    self._escape = 0
                continue
            if byte == 0x1B:
                self._escape = 1
                continue
            if byte < 0x20 or byte == 0x7F:
                if byte == 0x09 and self.lines:
                    self._add(byte)
                continue
            if not self.lines and not self._pending and byte in KEYS:
                return Key(chr(byte))
            bad = self._add(byte)
            if bad is not None:
                return bad
        buffer.clear()
        self._pos = 0
        return None

    def _add(self, byte: int) -> Bad | None:
        if self._skipping:
            return None
        self._pending.append(byte)
        if len(self._pending) > self.max_line:
            self._pending.clear()
            self._skipping = True
            return Bad(f"line too long (max {self.max_line} bytes); ignored")
        return None

    def _newline(self) -> Event | None:
        raw = bytes(self._pending)
        self._pending.clear()
        if self._skipping:
            self._skipping = False
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return Bad("that line is not valid UTF-8; ignored")
        if self.lines:
            return Line(text)
        text = text.strip()
        return Word(text) if text else Enter()
