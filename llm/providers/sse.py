"""Server-sent events, parsed incrementally as bytes arrive (the WHATWG event-stream rules)."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: str


class SSEParser:
    """Bytes in, events out, following the WHATWG event-stream rules.

    Bytes may be cut anywhere: inside a UTF-8 character, inside a line, between `\\r`
    and `\\n`. Comments (`: keep-alive`) and fields other than event/data are ignored.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._skip_lf = False  # the last read ended in \r: a leading \n belongs to it
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if self._skip_lf:
            self._skip_lf = False
            text = text[1:] if text[0] == "\n" else text
        self._skip_lf = text.endswith("\r")
        lines = _LINE_END.split(self._buffer + text)
        self._buffer = lines.pop()
        events: list[SSEEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[SSEEvent]:
        """At the end of the body: an unterminated last event still counts."""
        tail = self._buffer + self._decoder.decode(b"", final=True)
        self._buffer = ""
        return [e for e in (self._line(tail), self._line("")) if e]

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None
