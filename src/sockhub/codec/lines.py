"""Line framing: the seeds' "sticky packet" problem for text protocols.

TCP delivers a byte stream, not messages: one ``recv`` may hold half a line,
or three lines and the start of a fourth. :class:`LineDecoder` buffers the
partial line and hands back complete ones, whatever the read boundaries.

Rules:

* A line ends with LF; a CR right before the LF is removed too, so both
  ``b"a\\n"`` and ``b"a\\r\\n"`` give ``b"a"`` (RFC 854 NVT clients such as
  telnet send CRLF, nc and most scripts send LF).
* ``max_line`` bounds the content of a line, endings excluded. The decoder
  never holds more than ``max_line + 1`` bytes (the +1 is a CR that may be
  the first half of a CRLF): as soon as a partial line cannot fit, it raises
  :class:`~sockhub.errors.LineTooLong` instead of buffering more. After that
  the stream has lost its framing and the decoder refuses further input.
* Text decoding is separate (:func:`decode_utf8`), so a line of invalid
  UTF-8 is one bad line, not a broken stream.
"""

from __future__ import annotations

from sockhub.errors import DecodeError, LineTooLong

#: 64 KiB: ample for a chat line or a shell command, small enough that a
#: thousand clients sending junk cost at most 64 MiB. Twisted's
#: LineOnlyReceiver uses 16 KiB; IRC caps lines at 512 bytes.
DEFAULT_MAX_LINE = 64 * 1024


class LineDecoder:
    """Split a byte stream into lines.

    Args:
        max_line: the longest line accepted, in bytes, without its ending;
            ``None`` means unbounded (only for trusted input).
    """

    __slots__ = ("_buffer", "_failed", "max_line")

    def __init__(self, max_line: int | None = DEFAULT_MAX_LINE) -> None:
        if max_line is not None and max_line < 1:
            raise ValueError("max_line must be at least 1")
        self.max_line = max_line
        self._buffer = bytearray()
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished line held so far."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the lines they complete, endings removed.

        Raises:
            LineTooLong: a line exceeds ``max_line``. Its ``frames`` attribute
                holds the lines completed before it in this same call.
        """
        if self._failed:
            raise LineTooLong("line decoder already failed", limit=self.max_line or 0)
        buffer = self._buffer
        buffer += data
        lines: list[bytes] = []
        start = 0
        max_line = self.max_line
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            stop = end - 1 if end > start and buffer[end - 1] == 0x0D else end
            if max_line is not None and stop - start > max_line:
                self._fail(lines)
            lines.append(bytes(buffer[start:stop]))
            start = end + 1
        if start:
            del buffer[:start]
        # A partial line may hold max_line bytes plus a CR awaiting its LF.
        if max_line is not None and len(buffer) > max_line and not (
            len(buffer) == max_line + 1 and buffer[-1] == 0x0D
        ):
            self._fail(lines)
        return lines

    def _fail(self, lines: list[bytes]) -> None:
        self._failed = True
        self._buffer.clear()
        raise LineTooLong(
            f"line longer than {self.max_line} bytes", limit=self.max_line or 0, frames=lines
        )

    def flush(self) -> bytes | None:
        """At end of stream: return an unterminated last line, if any."""
        if not self._buffer or self._failed:
            return None
        line = bytes(self._buffer).removesuffix(b"\r")
        self._buffer.clear()
        return line


def decode_utf8(line: bytes) -> str:
    """Decode one line strictly as UTF-8.

    Raises:
        DecodeError: with the byte offset of the first bad sequence.
    """
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8 at byte {exc.start}") from None


def encode_line(text: str, newline: bytes = b"\r\n") -> bytes:
    """Encode one line of text as UTF-8 with its ending.

    Embedded CR and LF are replaced by spaces so that one call can never
    produce two lines on the wire (the line-injection hole).
    """
    if "\n" in text or "\r" in text:
        text = text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return text.encode("utf-8") + newline
