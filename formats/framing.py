"""RFC 6587 syslog-over-TCP framing, sans-IO: connection bytes in, frames out.

Strategy: one decoder per connection. Its first byte fixes the mode for good:
a digit means octet counting (``MSG-LEN SP SYSLOG-MSG``), anything else means
non-transparent framing, where LF or NUL ends a frame (and a CR before it is
dropped). Non-transparent chunks are cut with ``bytes.split``; octet-counted
frames are sliced out of a buffer after reading a header of a few bytes, so
Python runs per frame, never per byte. Every decision depends only on the
bytes seen so far, never on how they were chunked: feeding a stream byte by
byte gives the same frames and errors as feeding it whole. An oversized
non-transparent frame is reported once and skipped up to its terminator. A bad
or oversized octet count leaves no way to find the next frame, so the decoder
reports it, turns `broken` and discards the rest of the connection.
"""

from __future__ import annotations

import re

from formats._base import FormatError

# Bytes some octet-counting senders put between frames.
_SEPARATORS = b"\r\n\x00"


class FramingError(FormatError):
    """A framing problem on a TCP syslog connection.

    Reasons: ``frame_too_large`` (a frame or octet count above `max_frame`),
    ``bad_octet_count`` (an octet-counting header that is not a decimal number
    without leading zero followed by a space), ``truncated`` (the connection
    closed inside an octet-counted frame).
    """

    reason = "bad_framing"


class SyslogStreamDecoder:
    """Splits the byte stream of one TCP syslog connection into frames.

    Frames are returned without their framing: no MSG-LEN, no LF/NUL
    terminator, no CR before the LF. Empty non-transparent frames (blank lines,
    a NUL after a LF) are skipped. Octet-counting senders that put LF, CR or
    NUL between frames are tolerated.
    """

    def __init__(self, max_frame: int = 64 * 1024) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be positive")
        self._max = max_frame
        self._max_digits = len(str(max_frame))
        self._header = re.compile(
            rb"[%s]*+([1-9][0-9]{0,%d}) " % (re.escape(_SEPARATORS), self._max_digits - 1)
        )
        self._buf = bytearray()
        self._octet_counting: bool | None = None
        self._skipping = False
        self._broken = False

    @property
    def broken(self) -> bool:
        """True once the stream cannot be resynchronized; close the connection."""
        return self._broken

    def feed(self, data: bytes) -> list[bytes | FramingError]:
        """Add received bytes; return the frames (and errors) they complete, in order.

        Returns nothing once `broken`.
        """
        if self._broken or not data:
            return []
        if self._octet_counting is None:
            self._octet_counting = 0x30 <= data[0] <= 0x39
        if self._octet_counting:
            return self._feed_octets(data)
        return self._feed_lines(data)

    def close(self) -> list[bytes | FramingError]:
        """Signal EOF; return the final unterminated frame, if any.

        An octet-counted frame cut short gives a ``truncated`` error instead.
        """
        buf = self._buf
        out: list[bytes | FramingError] = []
        if not self._broken and not self._skipping and buf:
            if not self._octet_counting:
                self._emit_line(bytes(buf), out)
            elif buf.strip(_SEPARATORS):
                out.append(FramingError("connection closed inside a frame", "truncated"))
        buf.clear()
        self._skipping = False
        return out

    def _emit_line(self, frame: bytes, out: list[bytes | FramingError]) -> None:
        if len(frame) > self._max:
            out.append(self._too_large(len(frame)))
            return
        if frame.endswith(b"\r"):
            frame = frame[:-1]
        if frame:
            out.append(frame)

    def _too_large(self, size: int) -> FramingError:
        return FramingError(f"frame of {size} bytes or more exceeds {self._max}", "frame_too_large")

    def _feed_lines(self, data: bytes) -> list[bytes | FramingError]:
        out: list[bytes | FramingError] = []
        if b"\x00" in data:
            data = data.replace(b"\x00", b"\n")
        if self._skipping:
            end = data.find(b"\n")
            if end < 0:
                return out
            self._skipping = False
            data = data[end + 1 :]
        lines = data.split(b"\n")
        buf = self._buf
        if len(lines) > 1:
            first = lines[0]
            if buf:
                buf += first
                first = bytes(buf)
                buf.clear()
            self._emit_line(first, out)
            for i in range(1, len(lines) - 1):
                self._emit_line(lines[i], out)
        buf += lines[-1]
        if len(buf) > self._max:
            out.append(self._too_large(len(buf)))
            buf.clear()
            self._skipping = True
        return out

    def _feed_octets(self, data: bytes) -> list[bytes | FramingError]:
        out: list[bytes | FramingError] = []
        buf = self._buf
        buf += data
        size = len(buf)
        pos = 0
        header = self._header
        while True:
            m = header.match(buf, pos)
            if m is None:
                error = self._header_error(buf, pos)
                if error is not None:
                    return self._break(out, *error)
                break
            length = int(m.group(1))
            if length > self._max:
                return self._break(out, "frame_too_large", f"MSG-LEN {length} exceeds {self._max}")
            start = m.end()
            stop = start + length
            if stop > size:
                break
            out.append(bytes(buf[start:stop]))
            pos = stop
        del buf[:pos]
        return out

    def _header_error(self, buf: bytearray, pos: int) -> tuple[str, str] | None:
        """Why no header matches at `pos`, or None when it may still arrive."""
        size = len(buf)
        while pos < size and buf[pos] in _SEPARATORS:
            pos += 1
        # A valid MSG-LEN has at most `_max_digits` digits, so its space comes
        # within that many bytes plus one: a full window without it is an
        # error, however the bytes were chunked.
        window = pos + self._max_digits + 1
        space = buf.find(b" ", pos, window)
        head = buf[pos:window] if space < 0 else buf[pos:space]
        if space < 0 and not head:
            return None
        if not head.isdigit() or head[0] == 0x30:
            return "bad_octet_count", f"bad MSG-LEN {bytes(head)!r}"
        if len(head) > self._max_digits:
            return "frame_too_large", "MSG-LEN has too many digits"
        return None

    def _break(
        self, out: list[bytes | FramingError], reason: str, message: str
    ) -> list[bytes | FramingError]:
        out.append(FramingError(message, reason))
        self._broken = True
        self._buf.clear()
        return out
