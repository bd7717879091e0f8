"""/settings/presets/ and /settings/templates/: render, create, edit in place, delete after a
confirmation, the words of a refusal, the published ones read-only, bob's 404."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from llm.models import Preset, PromptTemplate

HTMX: dict[str, Any] = {"HTTP_HX_REQUEST": "true"}


def preset_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "Reviewer",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "system_prompt": "Review the code.",
        "temperature": "0.3",
        "max_tokens": "600",
    }
    data.update(overrides)
    return data


def test_anonymous_is_sent_to_sign_in(client: Client) -> None:
    for url in ("/settings/presets/", "/settings/templates/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_both_pages_render_and_the_settings_navigation_links_them(alice_client: Client) -> None:
    for url, heading in (("/settings/presets/", "Presets"), ("/settings/templates/", "Prompt")):
        html = alice_client.get(url).content.decode()
        assert f"<h1>{heading}" in html
        assert 'aria-label="Settings"' in html
        assert 'href="/settings/presets/"' in html and 'href="/settings/templates/"' in html
    # The provider page carries the same navigation.
    assert 'href="/settings/presets/"' in alice_client.get("/settings/llm/").content.decode()


def test_creating_a_preset_without_javascript_redirects_and_lists_it(
    alice: User, alice_client: Client
) -> None:
    response = alice_client.post("/settings/presets/", preset_data())
    assert response.status_code == 302
    preset = Preset.objects.get(user=alice)
    assert (preset.name, preset.model, preset.temperature, preset.max_tokens) == (
        "Reviewer",
        "gpt-4o-mini",
        0.3,
        600,
    )
    assert response["Location"] == f"/settings/presets/#preset-{preset.pk}"
    html = alice_client.get("/settings/presets/").content.decode()
    assert "“Reviewer” saved." in html
    assert f'id="preset-{preset.pk}"' in html


def test_a_refused_preset_shows_its_words_next_to_the_fields(alice_client: Client) -> None:
    response = alice_client.post(
        "/settings/presets/", preset_data(name=" ", temperature="5"), **HTMX
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="presets-panel"' in html and "<h1>" not in html  # the panel alone
    assert "Give the preset a name, like “Terse reviewer”." in html
    assert "The temperature cannot be above 2." in html
    assert "Not saved: fix what is marked below." in html
    assert not Preset.objects.exists()


def test_a_preset_is_edited_in_place_with_htmx(alice: User, alice_client: Client) -> None:
    preset = Preset.objects.create(user=alice, name="Old", provider="openai")
    form = alice_client.get(f"/settings/presets/{preset.pk}/?mode=edit", **HTMX)
    assert f'hx-post="/settings/presets/{preset.pk}/"' in form.content.decode()
    assert f'id="id_preset_{preset.pk}_name"' in form.content.decode()

    saved = alice_client.post(f"/settings/presets/{preset.pk}/", preset_data(name="New"), **HTMX)
    html = saved.content.decode()
    assert "“New” saved." in html and f'id="preset-{preset.pk}"' in html
    preset.refresh_from_db()
    assert (preset.name, preset.system_prompt) == ("New", "Review the code.")

    # Without JavaScript the edit link opens the same form on the whole page.
    page = alice_client.get(f"/settings/presets/?edit={preset.pk}").content.decode()
    assert f'action="/settings/presets/{preset.pk}/"' in page


def test_a_client_is_not_offered_publishing_and_cannot_sneak_it_in(
    alice: User, alice_client: Client
) -> None:
    assert "Publish to everyone" not in alice_client.get("/settings/presets/").content.decode()
    response = alice_client.post("/settings/presets/", preset_data(published="on"), **HTMX)
    assert "Only staff may publish a preset" in response.content.decode()
    assert not Preset.objects.exists()


def test_staff_publish_and_others_see_it_without_edit_or_delete(
    alice_client: Client, charlie_client: Client
) -> None:
    assert "Publish to everyone" in charlie_client.get("/settings/presets/").content.decode()
    charlie_client.post("/settings/presets/", preset_data(name="House", published="on"))
    preset = Preset.objects.get(name="House")
    assert preset.published

    html = alice_client.get("/settings/presets/").content.decode()
    assert "Published by staff" in html and "House" in html
    assert f"/settings/presets/{preset.pk}/delete/" not in html
    assert f"?edit={preset.pk}" not in html


def test_delete_asks_first_then_deletes(alice: User, alice_client: Client) -> None:
    preset = Preset.objects.create(user=alice, name="Gone soon", provider="local")
    confirm = alice_client.get(f"/settings/presets/{preset.pk}/delete/", **HTMX).content.decode()
    assert "Delete the preset “Gone soon”?" in confirm and "Yes, delete" in confirm
    assert Preset.objects.exists()

    done = alice_client.post(f"/settings/presets/{preset.pk}/delete/", **HTMX).content.decode()
    assert "“Gone soon” deleted." in done
    assert not Preset.objects.exists()


def test_a_template_is_created_and_its_brace_problem_is_shown_with_where(
    alice: User, alice_client: Client
) -> None:
    refused = alice_client.post(
        "/settings/templates/", {"name": "Letter", "text": "Dear {name,\nthanks"}, **HTMX
    ).content.decode()
    assert "The { at line 1, column 6 is never closed" in refused
    assert not PromptTemplate.objects.exists()

    response = alice_client.post(
        "/settings/templates/", {"name": "Letter", "text": "Dear {name}, thanks for {thing}."}
    )
    assert response.status_code == 302
    template = PromptTemplate.objects.get(user=alice)
    html = alice_client.get("/settings/templates/").content.decode()
    assert f'id="template-{template.pk}"' in html
    assert "<code>name</code> <code>thing</code>" in html


def test_a_template_is_edited_and_deleted(alice: User, alice_client: Client) -> None:
    template = PromptTemplate.objects.create(user=alice, name="T", text="Hi {who}")
    alice_client.post(f"/settings/templates/{template.pk}/", {"name": "T2", "text": "Bye {who}"})
    template.refresh_from_db()
    assert (template.name, template.text) == ("T2", "Bye {who}")
    response = alice_client.post(f"/settings/templates/{template.pk}/delete/")
    assert response.status_code == 302
    assert not PromptTemplate.objects.exists()


@pytest.mark.parametrize("kind", ["presets", "templates"])
def test_bob_gets_404_for_alices_on_every_path(alice: User, bob_client: Client, kind: str) -> None:
    if kind == "presets":
        item: Preset | PromptTemplate = Preset.objects.create(
            user=alice, name="Alice's", provider="local"
        )
        data = preset_data(name="Bob's now")
    else:
        item = PromptTemplate.objects.create(user=alice, name="Alice's", text="Hi")
        data = {"name": "Bob's now", "text": "x"}
    base = f"/settings/{kind}/{item.pk}/"
    for method, url in (
        ("get", base),
        ("get", f"{base}?mode=edit"),
        ("post", base),
        ("get", f"{base}delete/"),
        ("post", f"{base}delete/"),
    ):
        response = getattr(bob_client, method)(url, data if method == "post" else None, **HTMX)
        assert response.status_code == 404, (method, url)
    item.refresh_from_db()
    assert item.name == "Alice's"
    page = bob_client.get(f"/settings/{kind}/?edit={item.pk}").content.decode()
    assert "Alice's" not in page
