"""/api/v1/presets and /api/v1/templates: CRUD, validation in words, the staff-published
ones read-only to others, bob's 404 on every path of alice's, and a chat that names a preset."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import AsyncClient, Client

from accounts.models import ApiToken, User
from llm.models import Message, Preset, PromptTemplate
from tests.fakes.openai_server import FakeOpenAI


def bearer(user: User) -> dict[str, str]:
    _, raw = ApiToken.issue(user, "tests")
    return {"Authorization": f"Bearer {raw}"}


def call(method: str, path: str, auth: dict[str, str], body: Any = None) -> Any:
    data = "" if body is None else json.dumps(body)
    client = Client()
    return client.generic(method, path, data, content_type="application/json", headers=auth)


def make_preset(owner: User, **fields: Any) -> Preset:
    values: dict[str, Any] = {"name": "Terse", "provider": "openai", "model": "gpt-4o-mini"}
    values.update(fields)
    return Preset.objects.create(user=owner, **values)


def make_template(owner: User, **fields: Any) -> PromptTemplate:
    values: dict[str, Any] = {"name": "Translate", "text": "Translate {text} into {language}."}
    values.update(fields)
    return PromptTemplate.objects.create(user=owner, **values)


# --- presets ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_preset_is_created_listed_read_changed_and_deleted(alice: User) -> None:
    auth = bearer(alice)
    created = call(
        "POST",
        "/api/v1/presets",
        auth,
        {
            "name": "  Reviewer ",
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "system_prompt": "Review the code.",
            "temperature": 0.2,
            "max_tokens": 800,
        },
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["name"] == "Reviewer"
    assert (body["provider"], body["model"]) == ("anthropic", "claude-sonnet-4-5")
    assert (body["temperature"], body["max_tokens"]) == (0.2, 800)
    assert (body["published"], body["mine"]) == (False, True)
    pk = body["id"]

    listed = call("GET", "/api/v1/presets", auth).json()["presets"]
    assert [p["id"] for p in listed] == [pk]
    assert call("GET", f"/api/v1/presets/{pk}", auth).json() == body

    # What a PUT omits keeps its stored value; null empties a field.
    changed = call("PUT", f"/api/v1/presets/{pk}", auth, {"temperature": None, "model": "x"})
    assert changed.status_code == 200, changed.json()
    assert changed.json()["temperature"] is None
    assert changed.json()["model"] == "x"
    assert changed.json()["system_prompt"] == "Review the code."

    assert call("DELETE", f"/api/v1/presets/{pk}", auth).status_code == 204
    assert not Preset.objects.exists()
    assert call("GET", f"/api/v1/presets/{pk}", auth).status_code == 404


@pytest.mark.django_db
def test_preset_validation_says_what_is_wrong_with_each_field(alice: User) -> None:
    auth = bearer(alice)
    make_preset(alice, name="Taken")
    response = call(
        "POST",
        "/api/v1/presets",
        auth,
        {"name": "Taken", "provider": "nope", "temperature": 3, "max_tokens": "many", "x": 1},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    fields = error["fields"]
    assert "already have a preset named “Taken”" in fields["name"][0]
    assert fields["provider"][0].startswith("There is no provider “nope”")
    assert fields["temperature"] == ["The temperature cannot be above 2."]
    assert fields["max_tokens"] == ["Send a whole number here, or null."]
    assert fields["x"][0].startswith("Unknown field; the fields are name, provider")

    missing = call("POST", "/api/v1/presets", auth, {}).json()["error"]["fields"]
    assert missing["name"] == ["Give the preset a name, like “Terse reviewer”."]
    assert missing["provider"][0].startswith("Choose a provider, one of: local, openai")


@pytest.mark.django_db
def test_a_client_cannot_publish(alice: User) -> None:
    auth = bearer(alice)
    refused = call(
        "POST", "/api/v1/presets", auth, {"name": "Mine", "provider": "local", "published": True}
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"]["published"] == [
        "Only staff may publish a preset; yours stays private to you. "
        "Leave “published” out, or false."
    ]
    assert not Preset.objects.exists()
    preset = make_preset(alice)
    assert call("PUT", f"/api/v1/presets/{preset.pk}", auth, {"published": True}).status_code == 400
    template = make_template(alice)
    response = call("PUT", f"/api/v1/templates/{template.pk}", auth, {"published": True})
    assert response.status_code == 400
    assert "Only staff may publish a template" in response.json()["error"]["message"]
    preset.refresh_from_db()
    template.refresh_from_db()
    assert not preset.published and not template.published


@pytest.mark.django_db
def test_staff_publish_and_everyone_else_may_use_but_not_change(alice: User, charlie: User) -> None:
    staff = bearer(charlie)
    made = call(
        "POST",
        "/api/v1/presets",
        staff,
        {"name": "House style", "provider": "openai", "published": True},
    )
    assert made.status_code == 201, made.json()
    pk = made.json()["id"]
    own = make_preset(alice, name="Alpha")
    auth = bearer(alice)

    listed = call("GET", "/api/v1/presets", auth).json()["presets"]
    assert [(p["name"], p["mine"], p["published"]) for p in listed] == [
        ("Alpha", True, False),
        ("House style", False, True),
    ]
    assert call("GET", f"/api/v1/presets/{pk}", auth).json()["mine"] is False
    for method, body in (("PUT", {"name": "Hijacked"}), ("DELETE", None)):
        response = call(method, f"/api/v1/presets/{pk}", auth, body)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert Preset.objects.get(pk=pk).name == "House style"
    assert own.pk in [p["id"] for p in call("GET", "/api/v1/presets", auth).json()["presets"]]

    # Shown to others only while its owner is staff.
    charlie.role = User.Role.CLIENT
    charlie.save()
    assert call("GET", f"/api/v1/presets/{pk}", auth).status_code == 404


@pytest.mark.django_db
def test_a_staff_members_unpublished_one_is_theirs_alone(alice: User, charlie: User) -> None:
    preset = make_preset(charlie, published=False)
    template = make_template(charlie, published=False)
    auth = bearer(alice)
    assert call("GET", "/api/v1/presets", auth).json() == {"presets": []}
    assert call("GET", "/api/v1/templates", auth).json() == {"templates": []}
    assert call("GET", f"/api/v1/presets/{preset.pk}", auth).status_code == 404
    assert call("GET", f"/api/v1/templates/{template.pk}", auth).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["presets", "templates"])
def test_bob_gets_404_on_every_path_of_alices(alice: User, bob: User, kind: str) -> None:
    item = make_preset(alice) if kind == "presets" else make_template(alice)
    auth = bearer(bob)
    for method, body in (("GET", None), ("PUT", {"name": "Bob's now"}), ("DELETE", None)):
        response = call(method, f"/api/v1/{kind}/{item.pk}", auth, body)
        assert response.status_code == 404, method
        assert response.json()["error"]["code"] == "not_found"
    assert call("GET", f"/api/v1/{kind}", auth).json() == {kind: []}
    item.refresh_from_db()
    assert item.name != "Bob's now"


@pytest.mark.django_db
def test_wrong_method_and_no_token(alice: User) -> None:
    response = call("PATCH", "/api/v1/presets", bearer(alice), {})
    assert response.status_code == 405
    assert response["Allow"] == "GET, POST"
    assert call("GET", "/api/v1/templates", {}).status_code == 401


# --- templates ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_template_is_created_with_its_placeholders_changed_and_deleted(alice: User) -> None:
    auth = bearer(alice)
    text = "Translate {text} into {language}; keep {text} {{as is}}."
    created = call("POST", "/api/v1/templates", auth, {"name": "Translate", "text": text})
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["text"] == text
    assert body["placeholders"] == ["text", "language"]
    assert body["parts"] == [
        {"text": "Translate "},
        {"placeholder": "text"},
        {"text": " into "},
        {"placeholder": "language"},
        {"text": "; keep "},
        {"placeholder": "text"},
        {"text": " {as is}."},
    ]
    pk = body["id"]
    assert call("GET", "/api/v1/templates", auth).json() == {"templates": [body]}

    changed = call("PUT", f"/api/v1/templates/{pk}", auth, {"text": "Summarise {doc}"})
    assert changed.status_code == 200
    assert (changed.json()["name"], changed.json()["placeholders"]) == ("Translate", ["doc"])
    assert call("DELETE", f"/api/v1/templates/{pk}", auth).status_code == 204
    assert not PromptTemplate.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Hi {name", "The { at line 1, column 4 is never closed"),
        ("Hi\nname}", "The } at line 2, column 5 closes nothing: write }} for a literal brace"),
        (
            "Dear {first name}",
            "{first name} at line 1, column 6 is not a placeholder name: "
            "use only letters, digits and underscores, like {first_name}",
        ),
        ("Empty {} here", "{} at line 1, column 7 has no name"),
    ],
)
def test_a_template_with_bad_braces_is_refused_with_where(
    alice: User, text: str, words: str
) -> None:
    response = call("POST", "/api/v1/templates", bearer(alice), {"name": "T", "text": text})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["fields"]["text"][0].startswith(words), error
    assert error["message"].startswith("text: " + words)
    assert not PromptTemplate.objects.exists()


# --- a chat that names a preset -------------------------------------------------------------


async def post_chat(headers: dict[str, str], **body: Any) -> Any:
    return await AsyncClient().post(
        "/api/v1/chat", json.dumps(body), content_type="application/json", headers=headers
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("replies_end")
async def test_a_chat_with_a_preset_uses_its_settings(
    alice: User, alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    preset = await Preset.objects.acreate(
        user=alice,
        name="Terse",
        provider="openai",
        model="gpt-4o-mini",
        system_prompt="Answer in five words.",
        temperature=0.2,
        max_tokens=77,
    )
    fake_openai.reply("Short and to the point.")
    response = await post_chat(alice_auth, message="Explain DNS", preset=preset.pk)

    assert response.status_code == 200, response.json()
    assert (response.json()["provider"], response.json()["model"]) == ("openai", "gpt-4o-mini")
    sent = fake_openai.chat_requests[-1].json
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"][0] == {"role": "system", "content": "Answer in five words."}
    assert (sent["temperature"], sent["max_tokens"]) == (0.2, 77)

    # The request's own model wins; the rest still comes from the preset.
    await post_chat(alice_auth, message="Again", preset=preset.pk, model="gpt-4.1")
    sent = fake_openai.chat_requests[-1].json
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == ("gpt-4.1", 0.2, 77)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("replies_end")
async def test_a_chat_with_someone_elses_preset_is_404_and_nothing_is_sent(
    alice: User, bob: User, charlie: User, alice_auth: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    bobs = await Preset.objects.acreate(user=bob, name="Bob's", provider="openai")
    response = await post_chat(alice_auth, message="Hi", preset=bobs.pk)
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "not_found",
            "message": "There is no such preset of yours (or published by staff): "
            "it may be deleted.",
        }
    }
    assert fake_openai.chat_requests == []
    assert not await Message.objects.aexists()

    published = await Preset.objects.acreate(
        user=charlie, name="House", provider="openai", model="gpt-4o-mini", published=True
    )
    fake_openai.reply("ok")
    used = await post_chat(alice_auth, message="Hi", preset=published.pk)
    assert used.status_code == 200
    assert fake_openai.chat_requests[-1].json["model"] == "gpt-4o-mini"

    wrong = await post_chat(alice_auth, message="Hi", preset="House")
    assert wrong.status_code == 400
    assert wrong.json()["error"]["message"] == "preset must be a number."
