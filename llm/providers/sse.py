"""Server-sent events, parsed incrementally as bytes arrive (the WHATWG event-stream rules).

Parsing is linear in the bytes received, whatever a server sends: each read is searched
for line ends once, and an unfinished line grows in place (a bytearray) until its end
arrives; nothing already received is joined or searched again. A line or an event larger
than its cap raises `SSETooLarge` as soon as the cap is passed, so a hostile server can
neither exhaust memory nor hold the event loop with one endless line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")

DEFAULT_MAX_LINE = 1024 * 1024
DEFAULT_MAX_EVENT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: str


class SSETooLarge(ValueError):
    """A line or an event passed its cap; `what` is "line" or "event", `limit` in bytes.

    `events` are the whole events that came before it in the same read: they are part
    of the reply and belong to the caller.
    """

    def __init__(self, what: str, limit: int, events: list[SSEEvent] | None = None) -> None:
        super().__init__(f"an SSE {what} longer than {limit} bytes")
        self.what = what
        self.limit = limit
        self.events = events or []


class SSEParser:
    """Bytes in, events out, following the WHATWG event-stream rules.

    Bytes may be cut anywhere: inside a UTF-8 character, inside a line, between `\\r`
    and `\\n`. Lines are split as bytes (no UTF-8 sequence contains CR or LF) and each
    whole line is decoded once. Comments (`: keep-alive`) and fields other than
    event/data are ignored.
    """

    def __init__(
        self, *, max_line: int = DEFAULT_MAX_LINE, max_event: int = DEFAULT_MAX_EVENT
    ) -> None:
        self.max_line = max_line
        self.max_event = max_event
        self._pending = bytearray()  # the unfinished line
        self._skip_lf = False  # the last read ended in \r: a leading \n belongs to it
        self._event = ""
        self._data: list[str] = []
        self._data_size = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if not chunk:
            return []
        if b"\r" in chunk:
            self._skip_lf = chunk[-1:] == b"\r"
            lines = _LINE_END.split(chunk)
        else:
            lines = chunk.split(b"\n")
        tail = lines.pop()
        if not lines:  # no line ended in this read
            self._pending += tail
            if len(self._pending) > self.max_line:
                raise SSETooLarge("line", self.max_line)
            return []
        if self._pending:
            self._pending += lines[0]
            lines[0] = bytes(self._pending)
        self._pending = bytearray(tail)
        events: list[SSEEvent] = []
        for line in lines:
            if len(line) > self.max_line:
                raise SSETooLarge("line", self.max_line, events)
            try:
                event = self._line(line)
            except SSETooLarge as exc:
                exc.events = events
                raise
            if event is not None:
                events.append(event)
        if len(self._pending) > self.max_line:
            raise SSETooLarge("line", self.max_line, events)
        return events

    def close(self) -> list[SSEEvent]:
        """At the end of the body: an unterminated last event still counts."""
        tail = bytes(self._pending)
        self._pending = bytearray()
        return [e for e in (self._line(tail), self._line(b"")) if e]

    def _line(self, raw: bytes) -> SSEEvent | None:
        if not raw:
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data, self._data_size = "", [], 0
            return event
        if raw[:1] == b":":
            return None
        line = raw.decode("utf-8", "replace")
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_size += len(raw)
            if self._data_size > self.max_event:
                raise SSETooLarge("event", self.max_event)
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None
