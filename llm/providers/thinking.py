"""Splitting `<think>…</think>` out of a reply's text, as it streams.

Local reasoning models (DeepSeek-R1 distills, QwQ, Qwen3 on llama.cpp, LM Studio or a
vLLM without a reasoning parser) write their reasoning into the reply itself, between
`<think>` and `</think>` (https://docs.vllm.ai/en/stable/features/reasoning_outputs/
describes the format a reasoning parser takes apart). `ThinkSplitter` turns that text
into `ThinkingDelta` and `TextDelta` events chunk by chunk:

- a `<think>` counts only at the very start of the reply, after optional whitespace
  (at most MAX_LEAD characters of it, so nothing unbounded is held back); anywhere
  later it is ordinary text (a reply may well talk about the tag);
- a tag may arrive cut across chunks (`<thi` + `nk>`): the few characters that could
  still become a tag are held back until the next chunk decides;
- the whitespace just after `<think>` and `</think>` is dropped (templates put blank
  lines there; Qwen3 asked not to think writes an empty block);
- a stream that ends inside an unclosed think block: what was held stays thinking.

Each chunk is looked at once plus at most the 7 characters held from the one before,
so splitting is linear in the reply's length whatever the chunking.
"""

from __future__ import annotations

from llm.providers.base import TextDelta, ThinkingDelta

OPEN = "<think>"
CLOSE = "</think>"
WHITESPACE = " \t\r\n"
# More leading whitespace than this and no model is about to open a think block.
MAX_LEAD = 1024

Delta = TextDelta | ThinkingDelta

# Where the splitter is in the reply.
_START = 0  # nothing but whitespace yet: a <think> may still open
_THINK_LEAD = 1  # just after <think>: whitespace is dropped until the thinking starts
_THINK = 2  # inside the think block
_AFTER = 3  # just after </think>: whitespace is dropped until the answer starts
_TEXT = 4  # the answer: everything passes through
# What each whitespace-dropping state becomes once something else arrives.
_AFTER_WHITESPACE = {_THINK_LEAD: _THINK, _AFTER: _TEXT}


def _held_prefix(text: str, tag: str) -> int:
    """How many characters at the end of `text` could be the start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ThinkSplitter:
    """Feed it a reply's text chunks; it returns the thinking and answer deltas in them."""

    def __init__(self) -> None:
        self._state = _START
        self._lead: list[str] = []  # leading whitespace, given back as text if no <think>
        self._lead_size = 0
        self._held = ""  # a possible tag, cut by the end of the last chunk

    def feed(self, text: str) -> list[Delta]:
        out: list[Delta] = []
        while text:
            text = self._step(text, out)
        return out

    def close(self) -> list[Delta]:
        """At the end of the reply: whatever was held back, as what it turned out to be."""
        out: list[Delta] = []
        held, self._held = self._held, ""
        if self._state == _START:
            _emit(out, TextDelta, "".join(self._lead) + held)
        elif self._state == _THINK:
            _emit(out, ThinkingDelta, held)
        self._lead = []
        self._state = _TEXT
        return out

    def _step(self, text: str, out: list[Delta]) -> str:
        """Consume the start of `text` in the current state; return what is left."""
        if self._state == _TEXT:
            _emit(out, TextDelta, text)
            return ""
        if self._state in _AFTER_WHITESPACE:
            rest = text.lstrip(WHITESPACE)
            if rest:
                self._state = _AFTER_WHITESPACE[self._state]
            return rest
        if self._state == _START:
            return self._opening(text, out)
        return self._inside(text, out)

    def _opening(self, text: str, out: list[Delta]) -> str:
        if not self._held:
            stripped = text.lstrip(WHITESPACE)
            if len(stripped) < len(text):
                self._lead.append(text[: len(text) - len(stripped)])
                self._lead_size += len(text) - len(stripped)
            text = stripped
            if self._lead_size > MAX_LEAD:
                return self._answer(text, out)
            if not text:
                return ""
        want = OPEN[len(self._held) :]
        size = min(len(want), len(text))
        if text[:size] != want[:size]:  # not a think block: the whole reply is the answer
            return self._answer(text, out)
        if size < len(want):  # the chunk ended inside the tag
            self._held += text
            return ""
        self._state = _THINK_LEAD
        self._lead, self._held = [], ""
        return text[size:]

    def _answer(self, text: str, out: list[Delta]) -> str:
        """No think block after all: what was held back is the start of the answer."""
        self._state = _TEXT
        _emit(out, TextDelta, "".join(self._lead) + self._held)
        self._lead, self._held = [], ""
        return text

    def _inside(self, text: str, out: list[Delta]) -> str:
        # Only the held characters and this chunk are searched: at most 7 looked at twice.
        data = self._held + text
        end = data.find(CLOSE)
        if end >= 0:
            _emit(out, ThinkingDelta, data[:end])
            self._held = ""
            self._state = _AFTER
            return data[end + len(CLOSE) :]
        keep = _held_prefix(data, CLOSE)
        _emit(out, ThinkingDelta, data[: len(data) - keep])
        self._held = data[len(data) - keep :]
        return ""


def _emit(out: list[Delta], kind: type[TextDelta] | type[ThinkingDelta], text: str) -> None:
    if text:
        out.append(kind(text))
