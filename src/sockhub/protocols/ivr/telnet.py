"""Telnet negotiation (RFC 854, RFC 855) stripped from a caller's bytes, and refused.

A telnet client may open with ``IAC DO/WILL option`` requests. The hotline
wants none of the options (it works in the NVT's default line mode), so it
answers each request once with a refusal (``DO x`` → ``WONT x``, ``WILL x``
→ ``DONT x``, RFC 854 "General considerations") and never acknowledges
``DONT``/``WONT``, which ask for the state it is already in (RFC 854: "a
request to enter some mode it is already in ... should not be
acknowledged", which is also what prevents negotiation loops). Subnegotiation
(``IAC SB ... IAC SE``, RFC 855) and the other two-byte commands (NOP, GA,
AYT, ...) are dropped; ``IAC IAC`` is a data byte 255. None of it reaches
the menu, so a telnet user sees no garbage and a nc user is untouched.
"""

from __future__ import annotations

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240


class TelnetFilter:
    """Bytes in → (data bytes, reply bytes). Keeps its state across any split of the stream."""

    __slots__ = ("_answered", "_command", "_state")

    def __init__(self) -> None:
        self._state = "data"  # data, iac, option, sb, sb_iac
        self._command = 0
        self._answered: set[tuple[int, int]] = set()

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        if IAC not in data and self._state == "data":
            return data, b""
        out = bytearray()
        reply = bytearray()
        for byte in data:
            state = self._state
            if state == "data":
                if byte == IAC:
                    self._state = "iac"
                else:
                    out.append(byte)
            elif state == "iac":
                if byte == IAC:
                    out.append(IAC)
                    self._state = "data"
                elif byte in (DO, DONT, WILL, WONT):
                    self._command, self._state = byte, "option"
                elif byte == SB:
                    self._state = "sb"
                else:  # NOP, GA, AYT, IP, BRK...: nothing the menu needs
                    self._state = "data"
            elif state == "option":
                self._state = "data"
                answer = {DO: WONT, WILL: DONT}.get(self._command)
                if answer is not None and (self._command, byte) not in self._answered:
                    self._answered.add((self._command, byte))
                    reply += bytes((IAC, answer, byte))
            elif state == "sb":
                if byte == IAC:
                    self._state = "sb_iac"
            elif state == "sb_iac":
                self._state = "data" if byte == SE else "sb"
        return bytes(out), bytes(reply)
