"""A neighbour on a shared MQTT broker can neither read alice's answers nor ask as her.

Each test starts its own Mosquitto on a free loopback port with a password file (accounts
made with mosquitto_passwd), the ACL from docs/mqtt.md and a TLS listener, so what is
proven here is the setup an operator copies.
"""

from __future__ import annotations

import asyncio
import datetime
import getpass
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from accounts.models import User
from llm import mqtt
from llm.models import Conversation, Message
from tests.fakes.openai_server import FakeOpenAI
from tests.transports.test_mqtt import use_fake_openai

pytestmark = [pytest.mark.mqtt, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = "coppertone-bridge"
PREFIX = "coppertone"
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


def documented_acl() -> str:
    """The ACL block of docs/mqtt.md, exactly as an operator would copy it."""
    text = (ROOT / "docs" / "mqtt.md").read_text()
    found = re.search(r"```acl\n(.*?)```", text, re.DOTALL)
    assert found, "docs/mqtt.md has no ```acl block"
    return found.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_certificates(folder: Path) -> Path:
    """A CA and a broker certificate for 127.0.0.1 signed by it; returns the CA file."""
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("Coppertone test CA"))
        .issuer_name(name("Coppertone test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "broker.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "broker.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return folder / "ca.crt"


@dataclass
class Broker:
    port: int
    tls_port: int
    ca_file: Path
    passwords: dict[str, str]

    def url(self, username: str | None, *, tls: bool = False, password: str | None = None) -> str:
        scheme, port = ("mqtts", self.tls_port) if tls else ("mqtt", self.port)
        if username is None:
            return f"{scheme}://127.0.0.1:{port}"
        return f"{scheme}://{username}:{password or self.passwords[username]}@127.0.0.1:{port}"

    def client(self, username: str | None, *, tls: bool = False) -> aiomqtt.Client:
        address = mqtt.BrokerAddress.parse(self.url(username, tls=tls))
        return mqtt.client(address, ca_file=str(self.ca_file))

    @asynccontextmanager
    async def bridged(self) -> AsyncIterator[mqtt.Bridge]:
        async with self.client(BRIDGE) as bridge_client:
            bridge = mqtt.Bridge(bridge_client, PREFIX)
            await bridge.subscribe()
            listening = asyncio.create_task(bridge.listen())
            try:
                yield bridge
            finally:
                listening.cancel()

    @asynccontextmanager
    async def device(
        self, username: str, device_id: str = "kitchen", *, tls: bool = False
    ) -> AsyncIterator[Device]:
        async with self.client(username, tls=tls) as device_client:
            await device_client.subscribe(f"{PREFIX}/{username}/{device_id}/response", qos=1)
            yield Device(device_client, username, device_id)


@dataclass
class Device:
    client: aiomqtt.Client
    username: str
    device_id: str

    async def ask(self, **request: Any) -> list[dict[str, Any]]:
        await self.send(self.username, request)
        return await self.frames()

    async def send(self, as_user: str, request: dict[str, Any]) -> None:
        topic = f"{PREFIX}/{as_user}/{self.device_id}/request"
        await self.client.publish(topic, json.dumps(request), qos=1)

    async def frames(self) -> list[dict[str, Any]]:
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(15):
            async for message in self.client.messages:
                assert isinstance(message.payload, bytes)
                frames.append(json.loads(message.payload))
                if frames[-1]["type"] in ("done", "error"):
                    return frames
        return frames


async def received_within(client: aiomqtt.Client, seconds: float) -> list[str]:
    """The topics of every message `client` receives within `seconds`."""
    topics: list[str] = []
    try:
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                topics.append(message.topic.value)
    except TimeoutError:
        pass
    return topics


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    mosquitto = shutil.which("mosquitto", path=SBIN)
    mosquitto_passwd = shutil.which("mosquitto_passwd", path=SBIN)
    if not mosquitto or not mosquitto_passwd:
        pytest.skip("mosquitto and mosquitto_passwd are not installed")
    passwords = {user: secrets.token_urlsafe(12) for user in (BRIDGE, "alice", "bob")}
    password_file = tmp_path / "coppertone.passwd"
    password_file.touch()
    for user, password in passwords.items():
        subprocess.run([mosquitto_passwd, "-b", password_file, user, password], check=True)
    acl_file = tmp_path / "coppertone.acl"
    acl_file.write_text(documented_acl())
    ca_file = write_certificates(tmp_path)
    port, tls_port = free_port(), free_port()
    config = tmp_path / "mosquitto.conf"
    # The settings of docs/mqtt.md, with this test's ports and files; `user` keeps a
    # broker started by root from switching to an account that cannot read tmp_path.
    config.write_text(
        f"user {getpass.getuser()}\n"
        "per_listener_settings false\n"
        "allow_anonymous false\n"
        f"password_file {password_file}\n"
        f"acl_file {acl_file}\n"
        "max_packet_size 262144\n"
        "persistence false\n"
        f"listener {tls_port} 127.0.0.1\n"
        f"certfile {tmp_path / 'broker.crt'}\n"
        f"keyfile {tmp_path / 'broker.key'}\n"
        f"listener {port} 127.0.0.1\n"
    )
    log = (tmp_path / "mosquitto.log").open("w")
    process = subprocess.Popen([mosquitto, "-c", config], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, (tmp_path / "mosquitto.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                socket.create_connection(("127.0.0.1", tls_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.05)
        yield Broker(port, tls_port, ca_file, passwords)
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture
def people(alice: User, bob: User, fake_openai: FakeOpenAI) -> tuple[User, User]:
    use_fake_openai(alice, fake_openai)
    use_fake_openai(bob, fake_openai)
    return alice, bob


async def test_alice_is_answered_on_her_own_response_topic(
    broker: Broker, people: tuple[User, User], fake_openai: FakeOpenAI, replies_end: None
) -> None:
    alice, _ = people
    fake_openai.reply("Tea is ready.")
    async with broker.bridged(), broker.device("alice") as kitchen:
        frames = await kitchen.ask(message="Is tea ready?", request_id="r1")
    assert frames[-1]["type"] == "done" and frames[-1]["content"] == "Tea is ready."
    conversation = await Conversation.objects.aget(external_key__startswith="mqtt:")
    assert conversation.user_id == alice.pk


async def test_bob_cannot_read_alices_answers(
    broker: Broker, people: tuple[User, User], fake_openai: FakeOpenAI, replies_end: None
) -> None:
    fake_openai.reply("Secret plans.")
    async with (
        broker.bridged(),
        broker.client("bob") as eavesdropper,
        broker.device("alice") as kitchen,
    ):
        for wanted in (f"{PREFIX}/alice/kitchen/response", f"{PREFIX}/#", "#"):
            await eavesdropper.subscribe(wanted, qos=1)
        frames = await kitchen.ask(message="Plans?", request_id="r1")
        assert frames[-1]["content"] == "Secret plans."
        assert await received_within(eavesdropper, 1.0) == []


async def test_bob_cannot_ask_as_alice_or_answer_her(
    broker: Broker, people: tuple[User, User], fake_openai: FakeOpenAI, replies_end: None
) -> None:
    alice, bob = people
    fake_openai.reply("The real answer.")
    async with (
        broker.bridged(),
        broker.device("bob") as garage,
        broker.device("alice") as kitchen,
    ):
        await garage.send("alice", {"message": "Bob, posing as alice", "request_id": "fake"})
        fake_answer = {"request_id": "r1", "type": "done", "content": "Bob's fake answer."}
        await garage.client.publish(
            f"{PREFIX}/alice/kitchen/response", json.dumps(fake_answer), qos=1
        )
        frames = await kitchen.ask(message="Alice asking", request_id="r1")
        # Bob asking under his own name is answered as bob, on his topic only.
        bob_frames = await garage.ask(message="Bob asking", request_id="b1")
    assert frames[-1]["content"] == "The real answer."
    assert {f["request_id"] for f in frames} == {"r1"}
    assert bob_frames[-1]["type"] == "done"
    stored = {m.content: m async for m in Message.objects.filter(role="user")}
    assert set(stored) == {"Alice asking", "Bob asking"}
    bob_conversation = await Conversation.objects.aget(pk=stored["Bob asking"].conversation_id)
    assert bob_conversation.user_id == bob.pk
    assert len(fake_openai.chat_requests) == 2


async def test_anonymous_clients_and_wrong_passwords_are_refused(broker: Broker) -> None:
    for url in (broker.url(None), broker.url("alice", password="not-her-password")):
        with pytest.raises(aiomqtt.MqttError):
            async with mqtt.client(mqtt.BrokerAddress.parse(url)):
                pass


async def test_a_token_in_the_payload_is_refused(
    broker: Broker, people: tuple[User, User], fake_openai: FakeOpenAI, replies_end: None
) -> None:
    async with broker.bridged(), broker.device("alice") as kitchen:
        frames = await kitchen.ask(token="cpt_abc123", message="hi", request_id="r1")
    assert frames == [
        {
            "request_id": "r1",
            "type": "error",
            "error": {"code": "bad_request", "message": frames[0]["error"]["message"]},
        }
    ]
    assert "Tokens no longer go in MQTT payloads" in frames[0]["error"]["message"]
    assert fake_openai.chat_requests == []
    assert not await Message.objects.aexists()


async def test_a_provider_that_is_not_a_string_is_refused_and_the_bridge_keeps_working(
    broker: Broker, people: tuple[User, User], fake_openai: FakeOpenAI, replies_end: None
) -> None:
    fake_openai.reply("Still here.")
    async with broker.bridged(), broker.device("alice") as kitchen:
        frames = await kitchen.ask(message="hi", provider=[1], request_id="r1")
        assert frames[0]["error"]["code"] == "bad_request"
        assert '"provider"' in frames[0]["error"]["message"]
        frames = await kitchen.ask(message="hi again", request_id="r2")
    assert frames[-1]["type"] == "done" and frames[-1]["content"] == "Still here."


async def test_the_bridge_and_devices_talk_over_tls(
    broker: Broker,
    people: tuple[User, User],
    fake_openai: FakeOpenAI,
    replies_end: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_openai.reply("Encrypted tea.")
    caplog.set_level(logging.INFO, logger="llm.mqtt")
    serving = asyncio.create_task(
        mqtt.serve(broker.url(BRIDGE, tls=True), PREFIX, ca_file=str(broker.ca_file))
    )
    try:
        async with broker.device("alice", tls=True) as kitchen:
            async with asyncio.timeout(10):
                while "MQTT bridge connected to mqtts://" not in caplog.text:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # its subscription reaches the broker
            frames = await kitchen.ask(message="Tea?", request_id="r1")
    finally:
        serving.cancel()
    assert frames[-1]["type"] == "done" and frames[-1]["content"] == "Encrypted tea."


async def test_tls_refuses_a_broker_it_cannot_verify(broker: Broker) -> None:
    # The system's roots do not include the test CA.
    unverified = mqtt.BrokerAddress.parse(broker.url("alice", tls=True))
    with pytest.raises(aiomqtt.MqttError):
        async with mqtt.client(unverified):
            pass
    # Nor does plain MQTT get anywhere on the TLS port.
    password = broker.passwords["alice"]
    plain = aiomqtt.Client(
        "127.0.0.1", broker.tls_port, username="alice", password=password, timeout=1
    )
    with pytest.raises(aiomqtt.MqttError):
        async with plain:
            pass


def run_bridge_command(url: str, until: str, tmp_path: Path) -> str:
    """`manage.py mqtt_bridge --url URL` until `until` is in its output; all of its output."""
    out = tmp_path / "bridge.out"
    env = {**os.environ, "LOG_LEVEL": "DEBUG", "PYTHONUNBUFFERED": "1"}
    with out.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "mqtt_bridge", "--url", url, "--prefix", "cmd-test"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while until not in out.read_text() and process.poll() is None:
                assert time.monotonic() < deadline, out.read_text()
                time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(10)
    return out.read_text()


def test_the_bridge_never_prints_or_logs_its_broker_password(
    broker: Broker, tmp_path: Path
) -> None:
    password = broker.passwords[BRIDGE]
    output = run_bridge_command(broker.url(BRIDGE), "MQTT bridge connected", tmp_path)
    assert f"mqtt://{BRIDGE}:***@127.0.0.1:{broker.port}" in output
    assert password not in output

    wrong = "wrong-" + secrets.token_urlsafe(12)
    output = run_bridge_command(broker.url(BRIDGE, password=wrong), "retrying", tmp_path)
    assert "Not authorized" in output and wrong not in output

    with pytest.raises(ValueError) as refused:
        mqtt.BrokerAddress.parse(f"http://{BRIDGE}:{password}@127.0.0.1:1883")
    assert password not in str(refused.value)
    assert password not in repr(mqtt.BrokerAddress.parse(broker.url(BRIDGE)))
