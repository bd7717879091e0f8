"""compose.yaml and the Dockerfile: every service runs what it should and says when it is
healthy, and the web service runs several uvicorn workers as the README deploys it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_every_long_running_service_has_a_health_check() -> None:
    services = compose()["services"]
    assert set(services) >= {"web", "migrate", "mqtt-bridge", "postgres", "redis", "mosquitto"}
    for name in ("postgres", "redis", "mosquitto", "mqtt-bridge"):
        check = services[name]["healthcheck"]
        assert check["test"][0] == "CMD" and check["interval"], name
    # The web image's own HEALTHCHECK asks /api/v1/health (the database and channel layer).
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"HEALTHCHECK .*\n.*/api/v1/health", dockerfile)


def test_the_services_run_the_hub_the_bridge_and_the_migrations() -> None:
    services = compose()["services"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r'^CMD \["sh", "-c", "(.*)"\]$', dockerfile, re.M)
    assert cmd and "uvicorn coppertone.asgi:application" in cmd.group(1)
    assert "--workers" in cmd.group(1) and "$(nproc)" in cmd.group(1)  # workers = cores
    assert "--http coppertone.http_protocol:HeaderDeadline" in cmd.group(1)  # slow clients
    assert "command" not in services["web"]  # the image's CMD
    assert "manage.py migrate" in services["migrate"]["command"]
    assert services["mqtt-bridge"]["command"] == ["python", "manage.py", "mqtt_bridge"]
    web_needs = services["web"]["depends_on"]
    assert web_needs["migrate"] == {"condition": "service_completed_successfully"}
    assert web_needs["postgres"] == web_needs["redis"] == {"condition": "service_healthy"}


def test_the_app_services_share_postgres_and_redis_and_run_as_a_user() -> None:
    services = compose()["services"]
    for name in ("web", "migrate", "mqtt-bridge"):
        env = services[name]["environment"]
        assert (
            env["DATABASE_URL"].startswith("postgres://")
            and "@postgres:5432/" in env["DATABASE_URL"]
        )
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["DEBUG"] == "off"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER coppertone$", dockerfile, re.M)  # never root
    assert "-DGGML_NATIVE=OFF" in dockerfile  # the portable llama.cpp build


def test_the_broker_refuses_anonymous_clients_and_has_the_acl() -> None:
    configs = compose()["configs"]
    conf = configs["mosquitto-conf"]["content"]
    assert "allow_anonymous false" in conf and "acl_file" in conf
    acl = configs["mosquitto-acl"]["content"]
    assert "pattern write coppertone/%u/+/request" in acl
    assert "pattern read coppertone/%u/+/response" in acl
