"""Model output to safe HTML: markdown (markdown-it-py) passed through a sanitizer (nh3).

Model output is untrusted: raw HTML in it is shown as text (markdown-it's `html` is
off), then nh3 keeps only the tags markdown produces. Images are not rendered at all:
a markdown image is a request the browser would make on its own, which a prompt
injection can use to send the conversation somewhere. Every code block comes out as
`<pre class="code-block"><code class="language-…">`, the hook the widget uses to add
a copy button.
"""

from __future__ import annotations

import re

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore

_md = (
    MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    .enable(["table", "strikethrough"])
    .disable("image")
)


def _alignment_as_class(state: StateCore) -> None:
    # markdown-it aligns table cells with style="text-align:…"; the Content-Security-Policy
    # allows no inline style, so the alignment becomes a class (widget.css styles it).
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and "style" in token.attrs:
            align = str(token.attrs.pop("style")).removeprefix("text-align:")
            token.attrSet("class", f"align-{align}")


_md.core.ruler.push("alignment_as_class", _alignment_as_class)

TAGS = {
    "p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "pre": {"class"},
    "ol": {"start"},
    "th": {"class"},
    "td": {"class"},
}
_LANGUAGE = re.compile(r"language-[A-Za-z0-9_+#.-]{1,40}")
_ALIGN = re.compile(r"align-(left|right|center)")


def _keep(tag: str, attribute: str, value: str) -> str | None:
    # Classes are a closed list: only what markdown-it itself writes (and the alignment).
    if attribute == "class":
        if tag == "pre":
            return value if value == "code-block" else None
        if tag in ("th", "td"):
            return value if _ALIGN.fullmatch(value) else None
        return value if _LANGUAGE.fullmatch(value) else None
    return value


def to_html(text: str) -> str:
    """Sanitized HTML for a finished reply; safe to insert into a page as is."""
    if not text:
        return ""
    html = _md.render(text).replace("<pre><code", '<pre class="code-block"><code')
    return nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        attribute_filter=_keep,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
