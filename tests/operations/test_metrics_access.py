"""Who may read GET /metrics: a direct request from an allowed network, or the token."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import Client

from accounts.models import User

pytestmark = pytest.mark.django_db

OUTSIDE = "203.0.113.9"
TOKEN = "metrics-token-0123456789abcdef"


def get(client: Client, address: str = "127.0.0.1", **headers: str) -> Any:
    return client.get("/metrics", REMOTE_ADDR=address, headers=headers)


def test_loopback_reads_the_metrics_by_default(client: Client) -> None:
    response = get(client)
    assert response.status_code == 200
    assert b"# TYPE coppertone_live_replies gauge" in response.content


def test_ipv6_loopback_and_its_ipv4_mapped_form_are_loopback(client: Client) -> None:
    assert get(client, "::1").status_code == 200
    assert get(client, "::ffff:127.0.0.1").status_code == 200


def test_anyone_else_gets_the_404_of_a_path_that_does_not_exist(client: Client) -> None:
    refused = get(client, OUTSIDE)
    missing = client.get("/no-such-page", REMOTE_ADDR=OUTSIDE)
    assert refused.status_code == missing.status_code == 404
    assert b"coppertone_" not in refused.content


def test_a_signed_in_person_from_outside_gets_404_too(bob: User) -> None:
    client = Client()
    client.force_login(bob)
    assert get(client, OUTSIDE).status_code == 404


def test_other_methods_are_refused_with_405_only_for_allowed_callers(client: Client) -> None:
    assert client.post("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 405
    assert client.post("/metrics", REMOTE_ADDR=OUTSIDE).status_code == 404


def test_the_token_opens_it_from_anywhere(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    assert get(client, OUTSIDE, Authorization=f"Bearer {TOKEN}").status_code == 200
    assert get(client, OUTSIDE, Authorization=f"Bearer {TOKEN}x").status_code == 404
    assert get(client, OUTSIDE, Authorization="Bearer ").status_code == 404
    assert get(client, OUTSIDE).status_code == 404


def test_no_token_is_accepted_while_none_is_set(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert get(client, OUTSIDE, Authorization="Bearer ").status_code == 404
    assert get(client, OUTSIDE, Authorization="Bearer x").status_code == 404


def test_a_proxied_request_is_not_judged_by_the_proxys_address(
    client: Client, settings: Any
) -> None:
    # A proxy on the same machine makes every caller look like loopback.
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        assert get(client, **{header: OUTSIDE}).status_code == 404
    settings.METRICS_TOKEN = TOKEN
    proxied = get(client, Authorization=f"Bearer {TOKEN}", **{"X-Forwarded-For": OUTSIDE})
    assert proxied.status_code == 200


def test_the_allowed_networks_come_from_the_setting(client: Client, settings: Any) -> None:
    settings.METRICS_ALLOWED_NETWORKS = ["203.0.113.0/24"]
    assert get(client, OUTSIDE).status_code == 200
    assert get(client, "127.0.0.1").status_code == 404
    assert get(client, "198.51.100.1").status_code == 404


def test_a_bad_network_is_a_system_check_and_lets_nobody_in(client: Client, settings: Any) -> None:
    settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.0/8", "localhost"]
    errors = [m for m in run_checks() if m.id == "coppertone.E010"]
    assert errors and "'localhost' is not an address or a network" in errors[0].msg
    assert get(client).status_code == 404
    settings.METRICS_TOKEN = TOKEN
    assert get(client, Authorization=f"Bearer {TOKEN}").status_code == 200
