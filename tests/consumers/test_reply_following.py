"""A reply outlives the socket that asked for it: attach, follow and stop from another."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from accounts.models import User
from llm.models import Message
from tests.consumers.test_chat_consumer import (
    Connect,
    receive,
    reply_row,
    send_frame,
    text_of,
    until_end,
)
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)

WORDS = [f"w{i} " for i in range(60)]


async def started_with_deltas(socket: Any, count: int) -> tuple[dict[str, Any], list[Any]]:
    start = await receive(socket)
    assert start["type"] == "start"
    return start, [await receive(socket) for _ in range(count)]


async def wait_for_status(message_id: int, timeout: float = 10.0) -> Message:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        row = await reply_row(message_id)
        if row.status != "streaming" or asyncio.get_running_loop().time() > deadline:
            return row
        await asyncio.sleep(0.05)


async def test_closing_the_socket_lets_the_reply_finish(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    openai_for_alice.reply("".join(WORDS), chunks=WORDS, delay=0.01)
    socket = await connect(alice)
    await socket.send_json_to(send_frame("Talk for a while"))
    start, _ = await started_with_deltas(socket, 1)

    await socket.disconnect()
    row = await wait_for_status(start["message_id"])
    assert (row.status, row.content) == ("complete", "".join(WORDS))


async def test_a_second_socket_attaches_and_gets_the_rest_exactly_once(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    openai_for_alice.reply("".join(WORDS), chunks=WORDS, delay=0.02)
    first = await connect(alice)
    await first.send_json_to(send_frame("Count"))
    start, deltas = await started_with_deltas(first, 3)
    await first.disconnect()  # the person clicks a link: this page goes away

    second = await connect(alice)
    last_seq = deltas[-1]["seq"]
    await second.send_json_to(
        {"type": "attach", "message_id": start["message_id"], "after": last_seq}
    )
    frames, done = await until_end(second)

    assert done["type"] == "done" and done["status"] == "complete"
    assert [f["seq"] for f in frames] == sorted({f["seq"] for f in frames})
    assert frames[0]["seq"] > last_seq
    row = await reply_row(start["message_id"])
    assert row.status == "complete"
    assert text_of(deltas) + text_of(frames) == row.content == "".join(WORDS)
    assert row.seq == done["seq"]


async def test_attaching_from_the_start_replays_the_whole_reply(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    openai_for_alice.reply("".join(WORDS), chunks=WORDS, delay=0.01)
    first = await connect(alice)
    await first.send_json_to(send_frame("Count"))
    start, _ = await started_with_deltas(first, 2)

    second = await connect(alice)
    await second.send_json_to({"type": "attach", "message_id": start["message_id"], "after": 0})
    frames, done = await until_end(second)
    assert frames[0]["type"] == "start" and frames[0]["seq"] == 1
    assert text_of(frames) == "".join(WORDS)
    # Both sockets saw the same reply.
    rest, first_done = await until_end(first)
    assert first_done["seq"] == done["seq"]


async def test_stop_from_another_socket_stops_the_reply(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    openai_for_alice.reply("word " * 200, chunks=["word "] * 200, delay=0.05)
    first = await connect(alice)
    await first.send_json_to(send_frame("Talk for a while"))
    start, deltas = await started_with_deltas(first, 2)

    second = await connect(alice)
    await second.send_json_to({"type": "stop", "message_id": start["message_id"]})
    frames, done = await until_end(first)
    assert done["type"] == "done" and done["status"] == "stopped"
    assert await openai_for_alice.closed(2)
    row = await reply_row(start["message_id"])
    assert row.status == "stopped"
    assert row.content == text_of(deltas + frames)


async def test_attaching_to_a_finished_reply_gives_how_it_ended(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    openai_for_alice.reply("All done.")
    socket = await connect(alice)
    await socket.send_json_to(send_frame("Quick"))
    start = await receive(socket)
    _, done = await until_end(socket)

    await socket.send_json_to(
        {"type": "attach", "message_id": start["message_id"], "after": done["seq"] - 1}
    )
    again = await receive(socket)
    assert again["type"] == "done" and again["seq"] == done["seq"]
    assert again["html"] == "<p>All done.</p>\n"


async def test_bob_can_neither_attach_to_nor_stop_alices_reply(
    alice: User, bob: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    openai_for_alice.reply("word " * 40, chunks=["word "] * 40, delay=0.02)
    mine = await connect(alice)
    await mine.send_json_to(send_frame("Mine"))
    start, _ = await started_with_deltas(mine, 1)

    theirs = await connect(bob)
    await theirs.send_json_to({"type": "attach", "message_id": start["message_id"]})
    refused = await receive(theirs)
    await theirs.send_json_to({"type": "stop", "message_id": start["message_id"]})
    stop_refused = await receive(theirs)
    for frame in (refused, stop_refused):
        assert frame["type"] == "error" and frame["error"]["code"] == "not_found"

    _, done = await until_end(mine)
    assert done["status"] == "complete"


async def test_a_reply_nobody_follows_is_stopped_after_the_setting(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect, settings: Any
) -> None:
    settings.LLM_UNWATCHED_REPLY_SECONDS = 0.5
    openai_for_alice.reply("word " * 400, chunks=["word "] * 400, delay=0.02)
    socket = await connect(alice)
    await socket.send_json_to(send_frame("Long"))
    start, _ = await started_with_deltas(socket, 1)
    await socket.disconnect()

    row = await wait_for_status(start["message_id"])
    assert row.status == "stopped"
    assert 0 < len(row.content) < len("word " * 400)
