"""The <think> splitter: every way a stream can cut the tags, and the cases around them."""

from __future__ import annotations

import pytest

from llm.providers.base import TextDelta, ThinkingDelta
from llm.providers.thinking import MAX_LEAD, ThinkSplitter


def split(chunks: list[str]) -> tuple[str, str]:
    """(thinking, answer) as a reader of the events would see them."""
    splitter = ThinkSplitter()
    events = [e for chunk in chunks for e in splitter.feed(chunk)] + splitter.close()
    assert all(e.text for e in events)  # never an empty delta
    thinking = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    answer = "".join(e.text for e in events if isinstance(e, TextDelta))
    return thinking, answer


def cuts(text: str) -> list[list[str]]:
    """Every way to cut `text` in two, and in pieces of every size from 1 to 9."""
    halves = [[text[:i], text[i:]] for i in range(len(text) + 1)]
    sized = [[text[i : i + n] for i in range(0, len(text), n)] for n in range(1, 10)]
    return halves + sized


REPLY = "  \n<think>2 plus 2: add them.</think>\n\nIt is 4."


@pytest.mark.parametrize("chunks", cuts(REPLY))
def test_tags_cut_anywhere_give_the_same_thinking_and_answer(chunks: list[str]) -> None:
    assert split(chunks) == ("2 plus 2: add them.", "It is 4.")


def test_every_pair_of_cut_points() -> None:
    # Three pieces, cut at every pair of positions: both tags split in every way at once.
    for i in range(len(REPLY) + 1):
        for j in range(i, len(REPLY) + 1):
            assert split([REPLY[:i], REPLY[i:j], REPLY[j:]]) == ("2 plus 2: add them.", "It is 4.")


@pytest.mark.parametrize("chunks", cuts("<think>still working it out"))
def test_an_unclosed_think_block_stays_thinking(chunks: list[str]) -> None:
    assert split(chunks) == ("still working it out", "")


@pytest.mark.parametrize("chunks", cuts("<think>almost </thin"))
def test_a_half_closing_tag_at_the_end_is_thinking(chunks: list[str]) -> None:
    assert split(chunks) == ("almost </thin", "")


@pytest.mark.parametrize("chunks", cuts("Use <think> and </think> to mark reasoning."))
def test_a_think_tag_after_the_start_is_text(chunks: list[str]) -> None:
    assert split(chunks) == ("", "Use <think> and </think> to mark reasoning.")


@pytest.mark.parametrize("chunks", cuts("  <thinking about it> no"))
def test_a_lookalike_tag_is_text_with_its_whitespace(chunks: list[str]) -> None:
    assert split(chunks) == ("", "  <thinking about it> no")


@pytest.mark.parametrize("chunks", cuts("<thi"))
def test_a_reply_that_is_only_part_of_a_tag_is_text(chunks: list[str]) -> None:
    assert split(chunks) == ("", "<thi")


def test_an_empty_think_block_leaves_only_the_answer() -> None:
    # What Qwen3 writes when asked not to think.
    assert split(["<think>\n\n</think>\n\n", "Hello."]) == ("", "Hello.")


def test_whitespace_only_reply_is_kept() -> None:
    assert split([" ", "\n"]) == ("", " \n")


def test_a_closing_tag_inside_the_answer_is_text() -> None:
    assert split(["<think>a</think>b</think>c"]) == ("a", "b</think>c")


def test_too_much_leading_whitespace_gives_up_on_a_think_block() -> None:
    lead = " " * (MAX_LEAD + 1)
    assert split([lead, "<think>x</think>y"]) == ("", lead + "<think>x</think>y")


def test_thinking_streams_as_it_comes_with_at_most_a_tag_held_back() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("<think>") == []
    for word in ["one ", "two ", "three <", "/thi"]:
        out = splitter.feed(word)
        assert all(isinstance(e, ThinkingDelta) for e in out)
    # "three " went out at once; "</thi" waits for what follows.
    assert splitter.feed("nk>4") == [TextDelta("4")]


def test_a_long_reply_one_character_at_a_time() -> None:
    # Linear: a million characters fed singly pass through without piling up.
    thinking = "why " * 125_000
    splitter = ThinkSplitter()
    got = 0
    for ch in f"<think>{thinking}</think>ok":
        got += sum(len(e.text) for e in splitter.feed(ch) if isinstance(e, ThinkingDelta))
    assert got == len(thinking)
    assert splitter.close() == []
