"""Retention on a moving clock: expiry on schedule, pins, policy edits, caps, catch-up, admin.

`run_retention(now=...)` is the clock: memories are created now (or aged by rewriting their
timestamps), and runs happen days or years later. Default policies (migration 0004):
profile and preference forever, fact 365 days (cap 2000), task 90 days (cap 500).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connections, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ErasureReceipt, User
from accounts.services import subject_hash
from memory import retention
from memory import services as memory_services
from memory.models import Memory, MemoryEvent, RetentionPolicy, RetentionRun
from tests.factories import PASSWORD
from tests.fake_llm import fake_embedding

pytestmark = pytest.mark.django_db

DEFAULTS = {
    "profile": (None, None),
    "preference": (None, None),
    "fact": (365, 2000),
    "task": (90, 500),
}


@pytest.fixture(autouse=True)
def policies(db: None) -> Iterator[None]:
    # The defaults come from a data migration, which a transactional test's flush removes
    # for the tests after it: put them back as the migration wrote them.
    for kind, (ttl_days, cap) in DEFAULTS.items():
        RetentionPolicy.objects.update_or_create(
            kind=kind, defaults={"ttl_days": ttl_days, "max_per_user": cap}
        )
    yield


def _set_policy(kind: str, **values: int | None) -> None:
    policy = RetentionPolicy.objects.get(kind=kind)
    for name, value in values.items():
        setattr(policy, name, value)
    policy.save()


def _remember(user: Any, content: str, kind: str = "fact", importance: float = 0.5) -> Memory:
    return memory_services.remember(
        user=user, content=content, kind=kind, importance=importance,
        embedding=fake_embedding(content, 384),
    )  # fmt: skip


def _aged(memory: Memory, days: float, *, now: datetime | None = None) -> Memory:
    """Make `memory` look created and last changed `days` ago, with the expiry that implies."""
    when = (now or timezone.now()) - timedelta(days=days)
    Memory.objects.filter(pk=memory.pk).update(
        created_at=when, updated_at=when, expires_at=retention.expiry_for(memory.kind, when)
    )
    memory.refresh_from_db()
    return memory


def _ids(user: Any) -> set[int]:
    return set(Memory.objects.filter(user=user).values_list("pk", flat=True))


def _state() -> tuple[list[tuple[Any, ...]], int]:
    rows = list(Memory.objects.order_by("pk").values_list("pk", "expires_at", "pinned"))
    return rows, MemoryEvent.objects.count()


def _expired_events(memory_ids: set[int]) -> list[MemoryEvent]:
    return list(MemoryEvent.objects.filter(memory_ref__in=memory_ids, action="expired"))


# --- Expiry on schedule ---


def test_a_fact_survives_364_days_and_goes_after_366(user: Any) -> None:
    young = _aged(_remember(user, "I bought a red bicycle"), 364)
    old = _aged(_remember(user, "I ran a marathon in Rome"), 366)

    run = retention.run_retention()

    assert _ids(user) == {young.pk}
    assert run.expired == {"fact": 1} and run.trimmed == {}
    (event,) = _expired_events({old.pk})
    assert (event.actor, event.kind, event.user_id) == ("retention", "fact", user.pk)
    # The removal is recorded without the text: the point is not to keep it.
    assert event.old_content == "" and event.new_content == ""
    assert event.memory is None
    assert not _expired_events({young.pk})


def test_the_clock_moves_a_new_fact_expires_a_year_later(user: Any) -> None:
    fact = _remember(user, "I started learning the cello")
    task = _remember(user, "I am renovating the kitchen", kind="task")
    start = timezone.now()

    assert retention.run_retention(now=start + timedelta(days=89)).removed == 0
    assert retention.run_retention(now=start + timedelta(days=91)).expired == {"task": 1}
    assert retention.run_retention(now=start + timedelta(days=364)).removed == 0
    assert _ids(user) == {fact.pk}
    assert retention.run_retention(now=start + timedelta(days=366)).expired == {"fact": 1}
    assert _ids(user) == set()
    assert len(_expired_events({fact.pk, task.pk})) == 2


def test_profile_and_preference_never_expire(user: Any) -> None:
    profile = _aged(_remember(user, "My name is Ada", kind="profile"), 3650)
    preference = _aged(_remember(user, "I prefer short answers", kind="preference"), 3650)
    assert profile.expires_at is None and preference.expires_at is None

    run = retention.run_retention(now=timezone.now() + timedelta(days=3650))

    assert run.removed == 0
    assert _ids(user) == {profile.pk, preference.pk}


def test_a_pinned_ten_year_old_fact_is_kept(user: Any) -> None:
    pinned = _aged(_remember(user, "My daughter was born on a Tuesday"), 3650)
    memory_services.set_pinned(user=user, memory_id=pinned.pk, pinned=True)
    pinned.refresh_from_db()
    assert pinned.expires_at is not None and pinned.expires_at < timezone.now()
    unpinned = _aged(_remember(user, "I had a cold in March"), 3650)

    run = retention.run_retention()

    assert _ids(user) == {pinned.pk}
    assert run.expired == {"fact": 1}
    assert Memory.objects.filter(user=user).live().count() == 1  # live() includes pins
    assert not _expired_events({pinned.pk}) and _expired_events({unpinned.pk})


def test_update_and_confirmation_restart_the_clock(user: Any) -> None:
    updated = _aged(_remember(user, "I work on a compiler"), 360)
    confirmed = _aged(_remember(user, "I swim on Mondays"), 360)
    memory_services.update_memory(
        user=user, memory_id=updated.pk, content="I work on a query planner",
        embedding=fake_embedding("planner", 384),
    )  # fmt: skip
    memory_services.confirm(user=user, memory_id=confirmed.pk)

    run = retention.run_retention(now=timezone.now() + timedelta(days=30))

    assert run.removed == 0
    assert _ids(user) == {updated.pk, confirmed.pk}


def test_a_second_run_removes_nothing_and_changes_nothing(user: Any, other_user: Any) -> None:
    for days in (10, 200, 400, 800):
        _aged(_remember(user, f"Fact aged {days} days"), days)
        _aged(_remember(other_user, f"Their fact aged {days} days"), days)
    _aged(_remember(user, "An old task", kind="task"), 100)
    now = timezone.now()

    first = retention.run_retention(now=now)
    state = _state()
    second = retention.run_retention(now=now)

    assert first.expired == {"fact": 4, "task": 1}
    assert second.removed == 0 and second.expired == {} and second.trimmed == {}
    assert _state() == state
    assert RetentionRun.objects.count() == 2


def test_a_run_after_a_missed_week_catches_up_in_one_go(user: Any) -> None:
    last_run = timezone.now()
    retention.run_retention(now=last_run)
    # Memories whose expiry fell at various points of the week the job was down.
    due = set()
    for hours in (1, 20, 47, 80, 100, 130, 167):
        memory = _remember(user, f"Something said {hours} hours ago")
        Memory.objects.filter(pk=memory.pk).update(expires_at=last_run + timedelta(hours=hours))
        due.add(memory.pk)
    task = _remember(user, "A task that lapsed", kind="task")
    Memory.objects.filter(pk=task.pk).update(expires_at=last_run + timedelta(days=3))
    due.add(task.pk)
    later = _remember(user, "Something that expires next week")
    Memory.objects.filter(pk=later.pk).update(expires_at=last_run + timedelta(days=8))

    run = retention.run_retention(now=last_run + timedelta(days=7), batch_size=3)

    assert _ids(user) == {later.pk}
    assert run.expired == {"fact": 7, "task": 1}
    assert {e.memory_ref for e in _expired_events(due)} == due


# --- Policy edits apply to existing memories ---


def test_a_shorter_ttl_applies_to_existing_memories(user: Any, other_user: Any) -> None:
    forty = _aged(_remember(user, "I visited Oslo in spring"), 40)
    twenty = _aged(_remember(user, "I visited Bergen in summer"), 20)
    confirmed = _aged(_remember(other_user, "I visited Tromso in winter"), 40)
    Memory.objects.filter(pk=confirmed.pk).update(confirmed_at=timezone.now() - timedelta(days=10))
    task = _aged(_remember(user, "I am painting the fence", kind="task"), 40)
    assert retention.run_retention().removed == 0

    _set_policy("fact", ttl_days=30)
    changed = retention.apply_policy(kind="fact")

    assert changed == 3  # every fact, whoever it belongs to
    forty.refresh_from_db()
    assert forty.expires_at == forty.updated_at + timedelta(days=30)
    run = retention.run_retention()
    assert run.expired == {"fact": 1}
    assert _ids(user) == {twenty.pk, task.pk}  # the task follows its own policy (90 days)
    assert _ids(other_user) == {confirmed.pk}  # confirmed 10 days ago: its clock restarted

    # Back to "forever": nothing of that kind expires any more.
    _set_policy("fact", ttl_days=None)
    retention.apply_policy(kind="fact")
    assert not Memory.objects.filter(kind="fact").exclude(expires_at=None).exists()
    assert retention.run_retention(now=timezone.now() + timedelta(days=5000)).expired == {"task": 1}


@pytest.fixture
def staff_client(db: None) -> Client:
    User.objects.create_superuser(email="admin@example.com", password=PASSWORD)
    client = Client()
    assert client.login(email="admin@example.com", password=PASSWORD)
    return client


def _policy_formset(changes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    policies = list(RetentionPolicy.objects.order_by("kind"))
    data: dict[str, Any] = {
        "form-TOTAL_FORMS": str(len(policies)),
        "form-INITIAL_FORMS": str(len(policies)),
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    for index, policy in enumerate(policies):
        values = {"ttl_days": policy.ttl_days, "max_per_user": policy.max_per_user}
        values.update(changes.get(policy.kind, {}))
        data[f"form-{index}-id"] = str(policy.pk)
        for name, value in values.items():
            data[f"form-{index}-{name}"] = "" if value is None else str(value)
    return data


def test_editing_the_ttl_in_the_admin_changelist_applies_it_to_existing_memories(
    user: Any, staff_client: Client
) -> None:
    forty = _aged(_remember(user, "I visited Oslo in spring"), 40)
    twenty = _aged(_remember(user, "I visited Bergen in summer"), 20)
    url = reverse("admin:memory_retentionpolicy_changelist")

    response = staff_client.post(url, _policy_formset({"fact": {"ttl_days": 30}}), follow=True)

    assert response.status_code == 200
    assert RetentionPolicy.objects.get(kind="fact").ttl_days == 30
    assert "expiry recomputed for 2 existing memories" in response.content.decode()
    forty.refresh_from_db()
    assert forty.expires_at == forty.updated_at + timedelta(days=30)
    run = retention.run_retention()
    assert run.expired == {"fact": 1}
    assert _ids(user) == {twenty.pk}


# --- Caps ---


def _capped_memory(
    user: Any, name: str, importance: float, *, used_days_ago: float | None, age_days: float
) -> Memory:
    memory = _aged(_remember(user, f"I noted {name}", importance=importance), age_days)
    if used_days_ago is not None:
        Memory.objects.filter(pk=memory.pk).update(
            last_used_at=timezone.now() - timedelta(days=used_days_ago)
        )
    return memory


def test_over_the_cap_the_least_useful_go_and_pins_stay(user: Any, other_user: Any) -> None:
    _set_policy("fact", max_per_user=5)
    m: dict[str, Memory] = {}
    # Least useful first: lowest importance, then never used, then long unused, then oldest.
    m["low_unused_oldest"] = _capped_memory(user, "a", 0.1, used_days_ago=None, age_days=50)
    m["low_unused_newer"] = _capped_memory(user, "b", 0.1, used_days_ago=None, age_days=5)
    m["low_used_long_ago"] = _capped_memory(user, "c", 0.1, used_days_ago=60, age_days=1)
    m["low_used_recently"] = _capped_memory(user, "d", 0.1, used_days_ago=1, age_days=90)
    m["medium"] = _capped_memory(user, "e", 0.5, used_days_ago=None, age_days=200)
    m["high"] = _capped_memory(user, "f", 0.9, used_days_ago=None, age_days=300)
    # Pinned memories are never trimmed, however unimportant (they count toward the cap).
    for name in ("pin1", "pin2"):
        m[name] = _capped_memory(user, name, 0.0, used_days_ago=None, age_days=300)
        memory_services.set_pinned(user=user, memory_id=m[name].pk, pinned=True)
    # Another person at the cap with unimportant memories: untouched.
    theirs = {
        _capped_memory(other_user, f"o{i}", 0.0, used_days_ago=None, age_days=100).pk
        for i in range(5)
    }
    assert Memory.objects.filter(user=user).count() == 5 + 3

    run = retention.run_retention(batch_size=2)

    gone = {m["low_unused_oldest"].pk, m["low_unused_newer"].pk, m["low_used_long_ago"].pk}
    assert _ids(user) == {memory.pk for memory in m.values()} - gone
    assert run.trimmed == {"fact": 3} and run.expired == {}
    assert {e.memory_ref for e in _expired_events(gone)} == gone
    assert all(e.old_content == e.new_content == "" for e in _expired_events(gone))
    assert _ids(other_user) == theirs
    assert retention.run_retention().removed == 0  # at the cap now: idempotent


def test_a_person_over_the_cap_with_only_pins_loses_nothing(user: Any) -> None:
    _set_policy("fact", max_per_user=2)
    for i in range(4):
        memory = _remember(user, f"Pinned thing number {i}")
        memory_services.set_pinned(user=user, memory_id=memory.pk, pinned=True)

    assert retention.run_retention().removed == 0
    assert Memory.objects.filter(user=user).count() == 4


def test_the_default_fact_cap_of_2000_trims_exactly_three(user: Any, other_user: Any) -> None:
    vector = fake_embedding("bulk", 384)
    now = timezone.now()
    expires = retention.expiry_for("fact", now)

    def bulk(owner: Any, count: int, importance: float, label: str) -> list[Memory]:
        return Memory.objects.bulk_create(
            Memory(
                user=owner,
                kind="fact",
                content=f"{label} {i}",
                embedding=vector,
                importance=importance,
                created_at=now,
                updated_at=now,
                expires_at=expires,
            )
            for i in range(count)
        )

    bulk(user, 2000, 0.5, "Useful fact")
    least = {memory.pk for memory in bulk(user, 3, 0.05, "Trivial fact")}
    theirs = {memory.pk for memory in bulk(other_user, 10, 0.0, "Their fact")}

    run = retention.run_retention()

    assert run.trimmed == {"fact": 3}
    assert Memory.objects.filter(user=user).count() == 2000
    assert not Memory.objects.filter(pk__in=least).exists()
    assert _ids(other_user) == theirs


# --- Runs and the admin console ---


def test_runs_record_counts_per_kind(user: Any, other_user: Any) -> None:
    _set_policy("task", max_per_user=1)
    for owner in (user, other_user):
        _aged(_remember(owner, "An expired fact"), 400)
        _aged(_remember(owner, "An expired task", kind="task"), 100)
    for i in range(3):
        _remember(user, f"Live task {i}", kind="task")
    now = timezone.now()

    run = retention.run_retention(now=now, trigger="manual")

    run.refresh_from_db()
    assert run.trigger == "manual"
    assert run.started_at == now and run.finished_at is not None
    assert run.expired == {"fact": 2, "task": 2}
    assert run.trimmed == {"task": 2}
    assert run.removed == 6
    assert list(RetentionRun.objects.all()) == [run]


def test_expiring_soon_counts_per_kind_without_pins_or_the_already_expired(user: Any) -> None:
    now = timezone.now()

    def expiring_in(days: float, kind: str = "fact", pinned: bool = False) -> None:
        memory = _remember(user, f"A {kind} expiring in {days} days", kind=kind)
        Memory.objects.filter(pk=memory.pk).update(
            expires_at=now + timedelta(days=days), pinned=pinned
        )

    expiring_in(1)
    expiring_in(6.9)
    expiring_in(8)
    expiring_in(-1)
    expiring_in(2, pinned=True)
    expiring_in(3, kind="task")
    _remember(user, "My name is Ada", kind="profile")

    assert retention.expiring_soon(now=now) == {"fact": 2, "task": 1}
    assert retention.expiring_soon(days=30, now=now) == {"fact": 3, "task": 1}
    assert retention.expiring_soon(now=now + timedelta(days=10)) == {}


ADMIN_PAGES = (
    "admin:memory_retentionpolicy_changelist",
    "admin:memory_retentionrun_changelist",
    "admin:accounts_erasurereceipt_changelist",
)


def test_admin_pages_render_for_staff_without_any_memory_text(
    user: Any, staff_client: Client
) -> None:
    secret_text = "My dentist is Doctor Zebulon Quartz"
    _remember(user, secret_text)
    _aged(_remember(user, "I lost my umbrella"), 400)
    _remember(user, "I renew my passport soon", kind="task")
    Memory.objects.filter(kind="task").update(expires_at=timezone.now() + timedelta(days=2))
    retention.run_retention(trigger="manual")
    receipt = ErasureReceipt.objects.create(
        subject_hash=subject_hash("gone@example.com"), counts={"messages": 3}
    )

    for name in ADMIN_PAGES:
        response = staff_client.get(reverse(name))
        assert response.status_code == 200, name
        html = response.content.decode()
        assert secret_text not in html and "umbrella" not in html and "passport" not in html
    policies = staff_client.get(reverse(ADMIN_PAGES[0])).content.decode()
    assert "Expiring in 7 days" in policies and "Live memories" in policies
    runs = staff_client.get(reverse(ADMIN_PAGES[1])).content.decode()
    assert "manual" in runs
    receipts = staff_client.get(reverse(ADMIN_PAGES[2])).content.decode()
    assert receipt.subject_hash in receipts and "gone@example.com" not in receipts
    run = RetentionRun.objects.get()
    assert (
        staff_client.get(reverse("admin:memory_retentionrun_change", args=[run.pk])).status_code
        == 200
    )


def test_admin_pages_are_closed_to_everyone_else(client: Client, user_client: Client) -> None:
    User.objects.create_user(email="staff@example.com", password=PASSWORD, is_staff=True)
    staff_without_permissions = Client()
    assert staff_without_permissions.login(email="staff@example.com", password=PASSWORD)

    for name in ADMIN_PAGES:
        url = reverse(name)
        for visitor in (client, user_client):
            response = visitor.get(url)
            assert response.status_code == 302, name
            assert response["Location"].startswith(reverse("admin:login")), name
        assert staff_without_permissions.get(url).status_code == 403, name
    # Nor can they change a policy.
    response = user_client.post(reverse(ADMIN_PAGES[0]), _policy_formset({"fact": {"ttl_days": 1}}))
    assert response.status_code == 302
    assert RetentionPolicy.objects.get(kind="fact").ttl_days == 365


@pytest.mark.django_db
def test_run_retention_now_in_the_admin_runs_it_at_once_and_says_what_it_removed(
    user: Any, staff_client: Client
) -> None:
    # Queued, it waited behind a busy worker's extractions (90 s); the admin asked now.
    old = _aged(_remember(user, "I lost my umbrella"), 400)
    kept = _remember(user, "I found my umbrella")
    url = reverse("admin:memory_retentionpolicy_changelist")
    selected = list(RetentionPolicy.objects.values_list("pk", flat=True))

    response = staff_client.post(
        url, {"action": "run_now", "_selected_action": selected, "index": "0"}, follow=True
    )

    assert response.status_code == 200
    assert "Retention run done: 1 memory removed (1 expired, 0 over a cap)" in (
        response.content.decode()
    )
    run = RetentionRun.objects.get(trigger="manual")
    assert run.finished_at is not None and run.expired == {"fact": 1}
    assert _ids(user) == {kept.pk}
    assert _expired_events({old.pk})


# --- Concurrency ---


@pytest.mark.django_db(transaction=True)
def test_a_memory_locked_by_someone_else_is_skipped_not_waited_for(user: Any) -> None:
    locked = _aged(_remember(user, "I am editing this one right now"), 400)
    free = _aged(_remember(user, "Nobody is touching this one"), 400)
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        try:
            with transaction.atomic():
                Memory.objects.select_for_update().get(pk=locked.pk)
                holding.set()
                release.wait(20)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_lock, daemon=True)
    holder.start()
    assert holding.wait(10)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["run"] = retention.run_retention(batch_size=1)
        finally:
            connections.close_all()

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(5)
    finished_while_locked = not runner.is_alive()
    release.set()
    holder.join(10)
    runner.join(20)

    assert finished_while_locked, "retention spun on a locked row instead of skipping it"
    assert result["run"].expired == {"fact": 1}
    assert _ids(user) == {locked.pk}
    assert not Memory.objects.filter(pk=free.pk).exists()
    # The next run takes it.
    assert retention.run_retention().expired == {"fact": 1}
    assert _ids(user) == set()


@pytest.mark.django_db(transaction=True)
def test_a_person_busy_forgetting_keeps_expired_memories_until_the_next_run(
    user: Any, other_user: Any
) -> None:
    # A forget or correction holds the person's lock while it edits the recall keys of the
    # memories learned with it; retention skips that person rather than wait (or deadlock).
    busy = _aged(_remember(user, "I am forgetting things right now"), 400)
    theirs = _aged(_remember(other_user, "Nobody is forgetting anything here"), 400)
    holding, release = threading.Event(), threading.Event()

    def forget_slowly() -> None:
        try:
            with transaction.atomic():
                memory_services.lock_person(user.pk)
                holding.set()
                release.wait(20)
        finally:
            connections.close_all()

    holder = threading.Thread(target=forget_slowly, daemon=True)
    holder.start()
    assert holding.wait(10)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["run"] = retention.run_retention()
        finally:
            connections.close_all()

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(5)
    finished_while_locked = not runner.is_alive()
    release.set()
    holder.join(10)
    runner.join(20)

    assert finished_while_locked, "retention waited for a busy person instead of skipping"
    assert result["run"].expired == {"fact": 1}
    assert _ids(user) == {busy.pk}
    assert not Memory.objects.filter(pk=theirs.pk).exists()
    assert retention.run_retention().expired == {"fact": 1}
    assert _ids(user) == set()
