"""/settings/tokens/: create (shown once), list (prefix only), revoke with confirmation."""

from __future__ import annotations

from typing import Any

from django.test import Client

from accounts.models import ApiToken, User

URL = "/settings/tokens/"
HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


def test_anonymous_is_sent_to_sign_in(client: Client) -> None:
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_empty_list_says_what_tokens_are_for(alice_client: Client) -> None:
    html = alice_client.get(URL).content.decode()
    assert "No tokens yet." in html and 'name="name"' in html


def test_creating_shows_the_token_once_with_a_copy_button(alice_client: Client) -> None:
    response = alice_client.post(URL, {"name": "laptop"})
    html = response.content.decode()
    token = ApiToken.objects.get(name="laptop")
    raw = html.split('id="new-token" class="token-value" value="')[1].split('"')[0]
    assert ApiToken.authenticate(raw) == token.user
    assert "It is shown only this once" in html and 'data-copy="new-token"' in html
    assert "no-store" in response["Cache-Control"]
    # Afterwards only the prefix is ever shown.
    later = alice_client.get(URL).content.decode()
    assert raw not in later and f"{token.prefix}…" in later and "laptop" in later


def test_htmx_create_swaps_the_panel(alice_client: Client) -> None:
    html = alice_client.post(URL, {"name": "ci"}, **HTMX).content.decode()
    assert html.lstrip().startswith('<div id="token-panel"') and "<html" not in html
    assert "Your new token “ci”" in html


def test_a_name_is_required(alice_client: Client) -> None:
    html = alice_client.post(URL, {"name": ""}).content.decode()
    assert "Give the token a name" in html
    assert not ApiToken.objects.exists()


def test_revoke_asks_first_then_the_token_is_refused(alice_client: Client, alice: User) -> None:
    token, raw = ApiToken.issue(alice, "old-phone")
    confirm = alice_client.get(f"{URL}{token.pk}/revoke/", **HTMX).content.decode()
    assert "Revoke “old-phone”? Anything using it stops working." in confirm
    assert ApiToken.objects.filter(pk=token.pk).exists()
    done = alice_client.post(f"{URL}{token.pk}/revoke/").status_code
    assert done == 302
    assert "revoked" in alice_client.get(URL).content.decode()
    assert ApiToken.authenticate(raw) is None


def test_bob_gets_404_for_alices_tokens(bob_client: Client, alice: User) -> None:
    token, _ = ApiToken.issue(alice, "alice-laptop")
    assert bob_client.get(f"{URL}{token.pk}/revoke/").status_code == 404
    assert bob_client.post(f"{URL}{token.pk}/revoke/").status_code == 404
    assert "alice-laptop" not in bob_client.get(URL).content.decode()
    assert ApiToken.objects.filter(pk=token.pk).exists()
