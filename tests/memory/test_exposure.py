"""Local-only memories and model endpoints: configuration, rules, the API, pages, erasure."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse

from accounts import services as account_services
from chat import services as chat_services
from chat.export import export_everything
from config import endpoints
from memory import exposure
from memory import services as memory_services
from memory.models import LocalOnlyRules, Memory

JSON = "application/json"

HOSTED = {
    "name": "hosted",
    "label": "Hosted GPT",
    "base_url": "https://api.example.com/v1",
    "model": "gpt-test",
    "api_key_env": "HOSTED_KEY",
    "local": False,
    "layout": "auto",
}


# --- Configuration ---


def test_zero_configuration_is_one_local_endpoint(settings: Any) -> None:
    settings.LLM_EXTRA_ENDPOINTS = []
    settings.LLM_LOCAL = "auto"
    settings.LLM_BACKGROUND_BASE_URL = ""
    found = endpoints.all_endpoints()
    assert [e.name for e in found] == ["default"]
    assert found[0].local and found[0].default and found[0].label == "Local model"


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8080/v1", True),
        ("http://localhost:11434/v1", True),
        ("http://10.1.2.3/v1", True),
        ("http://192.168.0.10:8000/v1", True),
        ("http://[::1]:8000/v1", True),
        ("https://api.openai.com/v1", False),
        ("http://8.8.8.8/v1", False),
        ("https://llm.internal.example.com/v1", False),
    ],
)
def test_the_default_endpoint_is_local_by_its_address_unless_told(
    settings: Any, url: str, local: bool
) -> None:
    settings.LLM_BASE_URL = url
    settings.LLM_BACKGROUND_BASE_URL = ""
    settings.LLM_LOCAL = "auto"
    assert endpoints.default_endpoint().local is local
    settings.LLM_LOCAL = "false" if local else "true"
    assert endpoints.default_endpoint().local is not local


def test_a_hosted_background_server_makes_the_default_endpoint_hosted(settings: Any) -> None:
    settings.LLM_BASE_URL = "http://127.0.0.1:8080/v1"
    settings.LLM_BACKGROUND_BASE_URL = "https://api.example.com/v1"
    settings.LLM_LOCAL = "auto"
    assert not endpoints.default_endpoint().local


def test_extra_endpoints_are_read_from_their_variables() -> None:
    environ = {
        "LLM_ENDPOINTS": "hosted, ollama",
        "LLM_ENDPOINT_HOSTED_BASE_URL": "https://api.example.com/v1",
        "LLM_ENDPOINT_HOSTED_MODEL": "gpt-test",
        "LLM_ENDPOINT_HOSTED_API_KEY_ENV": "OPENAI_API_KEY",
        "LLM_ENDPOINT_HOSTED_LABEL": "GPT (hosted)",
        "LLM_ENDPOINT_OLLAMA_BASE_URL": "http://127.0.0.1:11434/v1",
        "LLM_ENDPOINT_OLLAMA_MODEL": "qwen2.5:0.5b",
        "LLM_ENDPOINT_OLLAMA_LAYOUT": "small",
        "OPENAI_API_KEY": "sk-never-in-settings-0123456789",
    }
    found = endpoints.parse_extra_endpoints(environ)
    assert [(e["name"], e["local"], e["layout"]) for e in found] == [
        ("hosted", False, "auto"),
        ("ollama", True, "small"),
    ]
    assert found[0]["label"] == "GPT (hosted)" and found[1]["label"] == "qwen2.5:0.5b"
    assert found[0]["api_key_env"] == "OPENAI_API_KEY"
    assert "sk-never" not in repr(found)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LLM_ENDPOINTS": "Bad Name"}, "not a valid name"),
        ({"LLM_ENDPOINTS": "x"}, "LLM_ENDPOINT_X_BASE_URL"),
        ({"LLM_ENDPOINTS": "default"}, "used twice"),
        (
            {
                "LLM_ENDPOINTS": "x",
                "LLM_ENDPOINT_X_BASE_URL": "http://h/v1",
                "LLM_ENDPOINT_X_MODEL": "m",
                "LLM_ENDPOINT_X_LOCAL": "maybe",
            },
            "LLM_ENDPOINT_X_LOCAL must be true, false or auto",
        ),
    ],
)
def test_a_wrong_endpoint_configuration_says_what_to_fix(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        endpoints.parse_extra_endpoints(environ)


# --- Health detection and rules ---


@pytest.mark.parametrize(
    "text",
    [
        "I am allergic to peanuts",
        "I take metformin for my diabetes",
        "I was diagnosed with ADHD last year",
        "My therapist says I should sleep more",
        "I have a chronic back condition and use an inhaler",
        "I take 20 mg of citalopram",
    ],
)
def test_health_is_detected(text: str) -> None:
    assert exposure.category_of(text) == "health"


@pytest.mark.parametrize(
    "text", ["I live in Porto", "I prefer short answers", "I am vegetarian", "My dog is Bruno"]
)
def test_other_memories_are_not_health(text: str) -> None:
    assert exposure.category_of(text) is None


def test_rules_default_to_health_and_a_memory_setting_wins(user: Any, settings: Any) -> None:
    settings.MEMORY_LOCAL_ONLY_DEFAULT = ["health"]
    rules = exposure.rules_for(user=user)
    assert rules.reason(kind="profile", content="I am allergic to cats") == "health"
    assert rules.reason(kind="profile", content="I live in Porto") is None
    assert rules.reason(kind="fact", content="I am allergic to cats", marked=False) is None
    assert rules.reason(kind="fact", content="I live in Porto", marked=True) == "marked"
    rules = exposure.set_rules(user=user, local_only={"fact": True, "health": False})
    assert rules.reason(kind="fact", content="I live in Porto") == "fact"
    assert rules.reason(kind="profile", content="I am allergic to cats") is None
    with pytest.raises(exposure.UnknownRule, match="Unknown kind or category 'secrets'"):
        exposure.set_rules(user=user, local_only={"secrets": True})


# --- API ---


def test_the_api_lists_endpoints_without_addresses_or_keys(
    user_client: Client, settings: Any
) -> None:
    settings.LLM_EXTRA_ENDPOINTS = [HOSTED]
    response = user_client.get("/api/endpoints/")
    assert response.status_code == 200
    assert [(e["name"], e["local"], e["default"]) for e in response.json()] == [
        ("default", True, True),
        ("hosted", False, False),
    ]
    assert "api.example.com" not in response.content.decode()


def test_a_conversation_chooses_its_endpoint_through_the_api(
    user_client: Client, settings: Any
) -> None:
    settings.LLM_EXTRA_ENDPOINTS = [HOSTED]
    created = user_client.post(
        "/api/conversations/", json.dumps({"endpoint": "hosted"}), content_type=JSON
    )
    assert created.status_code == 201
    body = created.json()
    assert body["endpoint"] == "hosted" and body["endpoint_local"] is False
    url = f"/api/conversations/{body['id']}/"
    changed = user_client.patch(url, json.dumps({"endpoint": "default"}), content_type=JSON)
    assert changed.status_code == 200 and changed.json()["endpoint"] == "default"

    for bad in ({"endpoint": "gpt-99"}, {"endpoint": 3}, {"endpoint": ""}):
        refused = user_client.patch(url, json.dumps(bad), content_type=JSON)
        assert refused.status_code == 400, bad
        assert "choose one of default, hosted" in refused.json()["detail"]
    refused = user_client.post(
        "/api/conversations/", json.dumps({"endpoint": "gpt-99"}), content_type=JSON
    )
    assert refused.status_code == 400
    assert refused.json()["detail"] == (
        "Unknown model endpoint 'gpt-99': choose one of default, hosted."
    )
    # A title change with an unknown endpoint changes nothing.
    user_client.patch(url, json.dumps({"title": "Kept", "endpoint": "nope"}), content_type=JSON)
    assert user_client.get(url).json()["title"] != "Kept"


def test_local_only_is_shown_and_set_per_memory_through_the_api(
    user: Any, user_client: Client
) -> None:
    allergy = memory_services.remember(user=user, content="I am allergic to cats")
    city = memory_services.remember(user=user, content="I live in Porto")
    listed = {m["id"]: m for m in user_client.get("/api/memories/").json()["results"]}
    assert listed[allergy.pk]["local_only"] is True
    assert listed[allergy.pk]["local_only_reason"] == "health"
    assert listed[allergy.pk]["local_only_setting"] is None
    assert listed[city.pk]["local_only"] is False

    url = f"/api/memories/{city.pk}/"
    marked = user_client.patch(url, json.dumps({"local_only": True}), content_type=JSON).json()
    assert marked["local_only"] is True and marked["local_only_reason"] == "marked"
    freed = user_client.patch(
        f"/api/memories/{allergy.pk}/", json.dumps({"local_only": False}), content_type=JSON
    ).json()
    assert freed["local_only"] is False and freed["local_only_setting"] is False
    back = user_client.patch(url, json.dumps({"local_only": None}), content_type=JSON).json()
    assert back["local_only_setting"] is None and back["local_only"] is False
    refused = user_client.patch(url, json.dumps({"local_only": "yes"}), content_type=JSON)
    assert refused.status_code == 400


def test_local_only_rules_through_the_api(user: Any, user_client: Client) -> None:
    rules = user_client.get("/api/local-only/").json()["local_only"]
    assert rules["health"] is True and rules["fact"] is False and "summary" in rules
    changed = user_client.put(
        "/api/local-only/", json.dumps({"local_only": {"fact": True}}), content_type=JSON
    )
    assert changed.status_code == 200
    assert changed.json()["local_only"]["fact"] is True
    assert changed.json()["local_only"]["health"] is True  # the others stay
    for bad in ({"local_only": {"fact": 1}}, {"local_only": "yes"}, {"local_only": {"task": None}}):
        refused = user_client.put("/api/local-only/", json.dumps(bad), content_type=JSON)
        assert refused.status_code == 400, bad
    # As everywhere in the API, a field it does not know changes nothing.
    ignored = user_client.put(
        "/api/local-only/", json.dumps({"local_only": {"secrets": True}}), content_type=JSON
    )
    assert ignored.status_code == 200 and "secrets" not in ignored.json()["local_only"]
    assert exposure.rules_for(user=user).keys == {"fact", "health"}


def test_another_persons_memory_cannot_be_marked(user: Any, other_user: Any) -> None:
    theirs = memory_services.remember(user=other_user, content="I live in Lyon")
    with pytest.raises(memory_services.MemoryGone):
        exposure.set_memory_local_only(user=user, memory_id=theirs.pk, local_only=True)
    theirs.refresh_from_db()
    assert theirs.local_only is None


# --- Pages, export, erasure ---


def test_the_memory_page_toggles_a_memory_and_saves_rules(user: Any, user_client: Client) -> None:
    memory = memory_services.remember(user=user, content="I live in Porto")
    page = user_client.get("/memory/").content.decode()
    assert 'id="local-only-rules"' in page and "Keep local" in page
    item = user_client.post(f"/memory/{memory.pk}/local-only", {"local_only": "true"})
    assert "Local only: marked by you" in item.content.decode()
    assert "Use my rules" in item.content.decode()
    assert (
        user_client.post(f"/memory/{memory.pk}/local-only", {"local_only": "x"}).status_code == 400
    )
    saved = user_client.post(
        "/memory/local-only", {"local_only": ["fact", "summary"]}, HTTP_HX_REQUEST="true"
    )
    assert saved.status_code == 200 and "Applied." in saved.content.decode()
    assert exposure.rules_for(user=user).keys == {"fact", "summary"}
    assert "Keep on local models only" in user_client.get("/account/").content.decode()


def test_the_export_holds_endpoints_and_local_only_settings(user: Any, settings: Any) -> None:
    settings.LLM_EXTRA_ENDPOINTS = [HOSTED]
    memory = memory_services.remember(user=user, content="I take insulin every morning")
    conversation = chat_services.start_conversation(user=user, endpoint="hosted")
    exported = export_everything(user=user)
    item = next(m for m in exported["memories"] if m["id"] == memory.pk)
    assert item["local_only"] is True and item["category"] == "health"
    assert item["local_only_setting"] is None
    assert exported["profile"]["local_only"]["health"] is True
    assert (
        next(c for c in exported["conversations"] if c["id"] == conversation.pk)["endpoint"]
        == "hosted"
    )


def test_erasure_leaves_no_local_only_settings(user: Any) -> None:
    exposure.set_rules(user=user, local_only={"fact": True})
    memory = memory_services.remember(user=user, content="I live in Porto")
    exposure.set_memory_local_only(user=user, memory_id=memory.pk, local_only=True)
    receipt = account_services.erase_account(user=user)
    assert not LocalOnlyRules.objects.filter(user_id=user.pk).exists()
    assert not Memory.objects.filter(pk=memory.pk).exists()
    assert receipt.counts["local-only settings"] == 1


def test_a_diagnosis_is_read_deterministically_and_kept_local(user: Any) -> None:
    from memory import statements

    reading = statements.read("I was diagnosed with asthma last year.")
    assert [(s.content, s.slot) for s in reading.statements] == [
        ("I have been diagnosed with asthma.", "condition:asthma")
    ]
    rules = exposure.rules_for(user=user)
    assert rules.reason(kind="fact", content=reading.statements[0].content) == "health"


def test_a_typo_in_the_local_only_default_is_a_startup_error(settings: Any) -> None:
    from memory.checks import check_local_only_default

    settings.MEMORY_LOCAL_ONLY_DEFAULT = ["health", "fact"]
    assert check_local_only_default() == []
    settings.MEMORY_LOCAL_ONLY_DEFAULT = ["helath"]
    (error,) = check_local_only_default()
    assert error.id == "mnemo.E010" and "'helath'" in error.msg


def test_the_staff_health_check_lists_endpoints_and_their_locality(settings: Any) -> None:
    from config.health import check_llm

    settings.LLM_EXTRA_ENDPOINTS = [HOSTED]
    listed = check_llm(detailed=True)["endpoints"]
    assert listed == [
        {"name": "default", "local": True, "model": "fake-chat"},
        {"name": "hosted", "local": False, "model": "gpt-test"},
    ]


def test_a_new_chat_starts_on_the_endpoint_chosen_in_the_sidebar(
    user: Any, user_client: Client, settings: Any
) -> None:
    from chat.models import Conversation

    settings.LLM_EXTRA_ENDPOINTS = [HOSTED]
    page = user_client.get("/chat/").content.decode()
    assert 'id="new-chat-endpoint"' in page and "Hosted GPT (hosted)" in page
    response = user_client.post("/chat/new", {"endpoint": "hosted"})
    assert response.status_code == 302
    assert Conversation.objects.get(user=user).endpoint == "hosted"
    refused = user_client.post("/chat/new", {"endpoint": "nope"})
    assert refused.status_code == 400
    assert "choose one of default, hosted" in refused.content.decode()
    assert Conversation.objects.filter(user=user).count() == 1
    settings.LLM_EXTRA_ENDPOINTS = []
    assert 'id="new-chat-endpoint"' not in user_client.get("/chat/").content.decode()


# Every common way of saying an allergy, a medication, a diagnosis or a condition.
_HEALTH_SAID = [
    ("I'm allergic to peanuts.", "allergy:peanuts"),
    ("I have an allergy to peanuts.", "allergy:peanuts"),
    ("I have a nut allergy.", "allergy:nut"),
    ("I've got a severe shellfish allergy.", "allergy:shellfish"),
    ("I'm lactose intolerant.", "intolerance:lactose"),
    ("I take metformin.", "medication:metformin"),
    ("I take sertraline every morning.", "medication:sertraline"),
    ("I take 50mg of levothyroxine.", "medication:levothyroxine"),
    ("I'm on blood thinners.", "medication:thinners"),
    ("I'm on insulin.", "medication:insulin"),
    ("I was diagnosed with diabetes.", "condition:diabetes"),
    ("I've been diagnosed with ADHD.", "condition:adhd"),
    ("I have asthma.", "condition:asthma"),
    ("I have type 2 diabetes.", "condition:diabetes"),
    ("I have eczema.", "condition:eczema"),
    ("I have high blood pressure.", "condition:high blood pressure"),
    ("I suffer from migraines.", "condition:migraines"),
    ("I live with epilepsy.", "condition:epilepsy"),
    ("I'm diabetic.", "condition:diabetic"),
    ("I'm asthmatic.", "condition:asthmatic"),
]


@pytest.mark.parametrize(("text", "slot"), _HEALTH_SAID)
def test_every_common_phrasing_of_a_health_fact_is_read_as_health(text: str, slot: str) -> None:
    """Allergies, medication, diagnoses and conditions, however they are said, are read as
    one statement in that slot (a second allergy does not replace the first) and read as
    health, so the default rule keeps them on local models."""
    from memory import statements

    read = statements.read(text).statements
    assert [s.slot for s in read] == [slot], read
    assert exposure.category_of(read[0].content) == "health", read[0].content


def test_two_allergies_or_two_conditions_said_the_same_way_are_both_kept() -> None:
    from memory import statements

    said = "I have an allergy to peanuts. I have an allergy to cats. I have asthma. I have eczema."
    slots = [s.slot for s in statements.read(said).statements]
    assert slots == ["allergy:peanuts", "allergy:cats", "condition:asthma", "condition:eczema"]


@pytest.mark.parametrize(
    "text", ["I take the bus to work.", "I take photos of birds.", "I have a dog called Rex."]
)
def test_taking_or_having_something_else_is_not_health(text: str) -> None:
    from memory import statements

    for statement in statements.read(text).statements:
        assert exposure.category_of(statement.content) is None
        assert not (statement.slot or "").startswith(("medication:", "condition:", "allergy:"))


def test_a_health_fact_learned_from_chat_is_kept_local_by_default(
    user: Any, user_client: Client, fake_llm: Any, settings: Any
) -> None:
    """What the tester did: said it in a chat on the default model, looked at the memory."""
    from tests.memory.labeled_extraction import Case, U, run_case

    settings.MEMORY_LOCAL_ONLY_DEFAULT = ["health"]
    fake_llm.responder = lambda request: {"facts": [], "entities": []}
    said = [text for text, _ in _HEALTH_SAID[:10]]
    live = run_case(Case("health", [U(text) for text in said]), user)
    assert len(live) == len(said) - 1, live  # both ways of saying the peanut allergy are one
    rules = exposure.rules_for(user=user)
    reasons = [rules.reason(kind=kind, content=content) for kind, content in live]
    assert reasons == ["health"] * len(live)
    page = user_client.get(reverse("memory:index")).content.decode()
    assert page.count("Local only: health") == len(live)
