"""Plain-text tables for the operator's commands (llm_check, usage_report)."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def aligned(
    head: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Collection[int] = (),
    total: Sequence[str] | None = None,
) -> str:
    """`rows` under `head`, each column as wide as its widest cell; the columns in `right`
    (numbers) aligned right. A `total` row comes last, under a second rule."""
    body = [list(head), *map(list, rows), *([list(total)] if total is not None else [])]
    widths = [max(len(row[i]) for row in body) for i in range(len(head))]

    def line(row: Sequence[str]) -> str:
        cells = (
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    lines = [line(head), rule, *(line(row) for row in rows)]
    if total is not None:
        lines += [rule, line(total)]
    return "\n".join(lines)
