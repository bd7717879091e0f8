"""Hole 7: an account deactivated by an admin cannot chat on a socket it already holds."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from accounts.models import User
from llm.models import Message
from tests.consumers.conftest import TIMEOUT, Connect
from tests.consumers.test_chat_consumer import receive, send_frame
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("replies_end")]


@sync_to_async
def deactivate(user: User) -> None:
    User.objects.filter(pk=user.pk).update(is_active=False)


async def test_a_deactivated_account_is_refused_and_its_socket_closed(
    alice: User, openai_for_alice: FakeOpenAI, connect: Connect
) -> None:
    socket = await connect(alice)
    await deactivate(alice)

    await socket.send_json_to(send_frame("Still here?"))
    frame = await receive(socket)
    assert frame["type"] == "error" and frame["error"]["code"] == "unauthenticated"
    assert "deactivated" in frame["error"]["message"]
    closed = await socket.receive_output(timeout=TIMEOUT)
    assert closed == {"type": "websocket.close", "code": 4403}
    assert openai_for_alice.chat_requests == []
    assert await Message.objects.acount() == 0
