"""What Mnemo knows about each person: memories, their history, summaries, extraction runs."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import Func, Q
from django.db.models.functions import Now
from django.utils import timezone
from pgvector.django import VectorField

EMBEDDING_DIMENSIONS = settings.EMBEDDING_DIMENSIONS
# A btree entry holds at most ~2.7 kB: the vector (4 bytes a dimension) fits in recall's
# covering index (Memory.Meta) up to ~600 dimensions; above, recall reads it from the rows.
RECALL_INDEX_HOLDS_VECTOR = EMBEDDING_DIMENSIONS <= 600


class TokenEstimate(Func):
    """`config.llm.count_tokens` in SQL: max(chars / 4, words * 4 / 3, 1).

    Stored in a generated column, so recall's token budget reads a number counted once at
    write time, whichever path wrote the row (services, bulk loads, COPY).
    """

    template = (
        "GREATEST(char_length(%(expressions)s) / 4, "
        "round(coalesce(array_length(regexp_split_to_array(btrim(%(expressions)s), "
        "'\\s+'), 1), 0) * 4 / 3.0)::integer, 1)"
    )
    output_field = models.IntegerField()


class MemoryQuerySet(models.QuerySet["Memory"]):
    def for_user(self, user: Any) -> MemoryQuerySet:
        return self.filter(user=user)

    def live(self) -> MemoryQuerySet:
        """Not expired (a pinned memory never is): what recall, the page and the prompt show."""
        return self.filter(Q(pinned=True) | Q(expires_at__isnull=True) | Q(expires_at__gt=Now()))


class Memory(models.Model):
    class Kind(models.TextChoices):
        PROFILE = "profile", "Profile"
        PREFERENCE = "preference", "Preference"
        FACT = "fact", "Fact"
        TASK = "task", "Task"

    # Profile and preference memories are always in the prompt; facts and tasks only when
    # relevant to the message.
    ALWAYS_ON = (Kind.PROFILE, Kind.PREFERENCE)

    # Recall scans one person's rows exactly through this foreign key's index (README: an
    # exact per-person scan beats a global ANN index filtered afterwards, which loses results):
    # memory_user_recall below, user_id with recall's columns included, not a plain one.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memories", db_index=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.FACT)
    # Written in the first person ("I live in Berlin"): it reads naturally on the memory page
    # and retrieves better against the person's own questions.
    content = models.TextField()
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    # More words recall finds the memory by, never shown in the prompt: the texts of the other
    # memories learned from the same turn, one a line (services.enrich_recall_keys). Cleared
    # when the text changes; a line goes when its memory is forgotten, expires or is corrected
    # (services.unlink_recall_keys).
    recall_keys = models.TextField(blank=True, default="", db_default="")
    search = models.GeneratedField(
        expression=SearchVector("content", "recall_keys", config="english"),
        output_field=SearchVectorField(),
        db_persist=True,
    )
    # length(search), kept for recall's BM25 document length: with it, recall reads every row's
    # part from the index memory_user_recall alone (the text itself only for rows that match).
    search_length = models.GeneratedField(
        expression=Func(
            SearchVector("content", "recall_keys", config="english"), function="length"
        ),
        output_field=models.IntegerField(),
        db_persist=True,
    )
    # Estimated prompt tokens of `content` (see TokenEstimate).
    tokens = models.GeneratedField(
        expression=TokenEstimate("content"), output_field=models.IntegerField(), db_persist=True
    )
    importance = models.FloatField(default=0.5)
    pinned = models.BooleanField(default=False)
    # When the thing happened or was said, if not when the row was written (a bulk import, an
    # extractor that read "last May"); recall matches times named in a message against it,
    # falling back to created_at.
    happened_at = models.DateTimeField(null=True, blank=True)
    # Provenance. Plain ids, not foreign keys: memory does not depend on the chat app, and a
    # memory outlives the conversation it was learned in unless the person deletes it.
    source_message_id = models.BigIntegerField(null=True, blank=True)
    source_conversation_id = models.BigIntegerField(null=True, blank=True)
    # The person's own words the memory was grounded in (shown as "where it came from"),
    # secrets replaced by a placeholder.
    source_excerpt = models.TextField(blank=True)
    # Learned in a conversation the person has since deleted: the memory stays (it is their
    # fact), its quote and links to the conversation go.
    source_deleted = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Said again: a duplicate statement confirms a memory instead of adding a copy.
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirmations = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Whether the memory may only go into prompts sent to a local endpoint: True or False as
    # the person set it for this memory, None to follow their rules per kind and category
    # (memory/exposure.py; health is local only by default).
    local_only = models.BooleanField(null=True, blank=True, default=None)

    objects = MemoryQuerySet.as_manager()

    class Meta:
        ordering = ["kind", "-updated_at"]
        indexes = [
            models.Index(fields=["expires_at"], name="memory_expires", condition=Q(pinned=False)),
            # Recall's exact per-person scan is an index-only scan of this: a person's entries
            # sit together on ~250 leaf pages per 1,000 memories whatever order the rows were
            # written in, where their heap rows lie scattered, one page each (README, "Recall
            # speed"). Every column recall reads for each row is here; the text only for the
            # rows its words match (memory_user_search). Bounded width: ~1.6 kB a tuple, under
            # btree's ~2.7 kB limit (fixed-size columns only; see RECALL_INDEX_HOLDS_VECTOR).
            models.Index(
                fields=["user"],
                include=[
                    "id",
                    "kind",
                    "importance",
                    "pinned",
                    "expires_at",
                    "created_at",
                    "updated_at",
                    "happened_at",
                    "source_conversation_id",
                    "source_message_id",
                    "search_length",
                ]
                + (["embedding"] if RECALL_INDEX_HOLDS_VECTOR else []),
                name="memory_user_recall",
            ),
            # Which of the person's rows share a word with the message (recall's BM25 part):
            # user_id in the same GIN index (btree_gin), so the lookup reads this person's
            # posting lists only, not every row that has the word.
            GinIndex(fields=["user", "search"], name="memory_user_search"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.content[:60]}"

    def provenance(self) -> dict[str, Any]:
        """Where the memory came from, as the API and the export show it."""
        if self.source_deleted:
            origin = "a deleted conversation"
        elif self.source_message_id:
            origin = "a conversation"
        else:
            origin = "added by you"
        return {
            "message_id": self.source_message_id,
            "conversation_id": self.source_conversation_id,
            "excerpt": self.source_excerpt,
            "conversation_deleted": self.source_deleted,
            "from": origin,
        }


class MemoryEvent(models.Model):
    """One change to a memory, by whom, with the old and new text: the memory's history."""

    class Action(models.TextChoices):
        ADDED = "added"
        UPDATED = "updated"
        DELETED = "deleted"
        EXPIRED = "expired"
        PINNED = "pinned"
        UNPINNED = "unpinned"

    class Actor(models.TextChoices):
        EXTRACTOR = "extractor"
        USER = "user"
        ADMIN = "admin"
        RETENTION = "retention"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memory_events"
    )
    # No database-level foreign key (Django still sets it to NULL when the memory goes):
    # PostgreSQL checks a foreign key once per deleted memory, which made erasing 100,000
    # memories take seconds (bench/erase.py).
    memory = models.ForeignKey(
        Memory,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="events",
        db_constraint=False,
    )
    # Kept when the memory itself is gone, so a deletion still belongs to its history.
    memory_ref = models.BigIntegerField(db_index=True)
    kind = models.CharField(max_length=16, choices=Memory.Kind.choices)
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.CharField(max_length=16, choices=Actor.choices)
    old_content = models.TextField(blank=True)
    new_content = models.TextField(blank=True)
    source_message_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="memoryevent_user_recent")]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor}: {self.new_content or self.old_content}"[:80]


class ExtractionRun(models.Model):
    """The one extraction of one message: its unique key makes a redelivered task a no-op."""

    class Status(models.TextChoices):
        DONE = "done"
        SKIPPED = "skipped"
        FAILED = "failed"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="extraction_runs"
    )
    source_message_id = models.BigIntegerField(unique=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    candidates = models.PositiveSmallIntegerField(default=0)
    added = models.PositiveSmallIntegerField(default=0)
    updated = models.PositiveSmallIntegerField(default=0)
    deleted = models.PositiveSmallIntegerField(default=0)
    unchanged = models.PositiveSmallIntegerField(default=0)
    rejected = models.PositiveSmallIntegerField(default=0)
    llm_calls = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"run for message {self.source_message_id}: {self.status}"


class ConversationSummary(models.Model):
    """A rolling summary of one conversation, recallable from later conversations."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversation_summaries"
    )
    conversation_id = models.BigIntegerField(unique=True)
    conversation_title = models.CharField(max_length=120, blank=True)
    content = models.TextField()
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    search = models.GeneratedField(
        expression=SearchVector("content", config="english"),
        output_field=SearchVectorField(),
        db_persist=True,
    )
    tokens = models.GeneratedField(
        expression=TokenEstimate("content"), output_field=models.IntegerField(), db_persist=True
    )
    # The newest message the summary covers: the next summary starts after it.
    last_message_id = models.BigIntegerField()
    message_count = models.PositiveIntegerField(default=0)
    # {message id: [[start, end], …]}: where the conversation's messages say facts the person
    # had forgotten (positions only, never words). A summary never reads those sentences,
    # nor the reply to a message that held one (memory.services.readable_messages). "floor":
    # a summary older than these records is rebuilt only from after that message.
    forgotten_spans = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["user", "-updated_at"], name="summary_user_recent")]

    def __str__(self) -> str:
        return f"summary of conversation {self.conversation_id}"


class RetentionPolicy(models.Model):
    """How long memories of one kind live, and how many a person may keep (set by staff)."""

    kind = models.CharField(max_length=16, choices=Memory.Kind.choices, unique=True)
    ttl_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Days a memory lives after it last changed or was confirmed. Empty: forever.",
    )
    max_per_user = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Most memories of this kind per person (the least "
        "useful go first). Empty: no cap.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "retention policies"
        ordering = ["kind"]

    def __str__(self) -> str:
        life = f"{self.ttl_days} days" if self.ttl_days else "forever"
        return f"{self.get_kind_display()}: {life}"


class RetentionRun(models.Model):
    """One pass of the retention job: when, why, and how many memories it removed per kind."""

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=16, default="schedule")  # schedule | manual | policy
    expired = models.JSONField(default=dict)
    trimmed = models.JSONField(default=dict)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"retention run {self.started_at:%Y-%m-%d %H:%M} ({self.trigger})"

    @property
    def removed(self) -> int:
        return sum(self.expired.values()) + sum(self.trimmed.values())


class Entity(models.Model):
    """A person, pet, place, organisation or project in the person's life, with attributes."""

    class Type(models.TextChoices):
        PERSON = "person", "Person"
        PET = "pet", "Pet"
        PLACE = "place", "Place"
        ORGANIZATION = "organization", "Organisation"
        PROJECT = "project", "Project"
        OTHER = "other", "Other"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="entities"
    )
    name = models.CharField(max_length=120)
    # Lower-cased name: one entity per name per person; recall matches it against messages.
    key = models.CharField(max_length=120)
    type = models.CharField(max_length=16, choices=Type.choices, default=Type.OTHER)
    attributes = models.JSONField(default=dict, blank=True)
    # No database-level foreign keys on the links, as for MemoryEvent.memory (erasure speed).
    memories = models.ManyToManyField(
        Memory, blank=True, related_name="entities", db_constraint=False
    )
    source_message_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["type", "name"]
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="entity_user_key")]
        verbose_name_plural = "entities"

    def __str__(self) -> str:
        return f"{self.type}: {self.name}"

    def describe(self) -> str:
        """ "Sarah (person): works at: Google; job: software engineer"."""
        details = "; ".join(f"{k}: {v}" for k, v in sorted(self.attributes.items()))
        return f"{self.name} ({self.type})" + (f": {details}" if details else "")


class EntityEvent(models.Model):
    """One change to an entity's attributes: the entity's history."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="entity_events"
    )
    entity = models.ForeignKey(
        Entity, on_delete=models.SET_NULL, null=True, blank=True, related_name="events"
    )
    entity_ref = models.BigIntegerField(db_index=True)
    action = models.CharField(max_length=16)  # added | updated | deleted
    actor = models.CharField(max_length=16, choices=MemoryEvent.Actor.choices)
    attribute = models.CharField(max_length=60, blank=True)
    old_value = models.CharField(max_length=300, blank=True)
    new_value = models.CharField(max_length=300, blank=True)
    source_message_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.attribute}: {self.old_value} → {self.new_value}"


class PendingMemoryQuerySet(models.QuerySet["PendingMemory"]):
    def for_user(self, user: Any) -> PendingMemoryQuerySet:
        return self.filter(user=user)

    def waiting(self) -> PendingMemoryQuerySet:
        """Not yet expired (the sweep deletes the expired ones; until then they are hidden)."""
        return self.filter(expires_at__gt=Now())


class PendingMemory(models.Model):
    """A change extraction proposes while the person asked to review memories first.

    A separate table, not a status on Memory: recall, the prompt, the memory list, counts,
    retention and entities read Memory only, so nothing waiting for review can reach them.
    Approving applies the operation through the memory services (history starts then);
    rejecting or expiring deletes the row, and nothing else ever held its words.
    """

    class Operation(models.TextChoices):
        ADD = "add", "Add"
        UPDATE = "update", "Replace"
        DELETE = "delete", "Forget"
        CONFIRM = "confirm", "Confirm"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pending_memories"
    )
    operation = models.CharField(max_length=16, choices=Operation.choices)
    kind = models.CharField(max_length=16, choices=Memory.Kind.choices, default=Memory.Kind.FACT)
    # The proposed text (for a deletion: the statement that contradicts the memory).
    content = models.TextField()
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    importance = models.FloatField(default=0.5)
    # The memory an update, deletion or confirmation would change: a plain id (the memory
    # may go meanwhile), and when it last changed, to notice an edit made since.
    target_id = models.BigIntegerField(null=True, blank=True)
    target_updated_at = models.DateTimeField(null=True, blank=True)
    # Provenance, as on Memory.
    source_message_id = models.BigIntegerField(null=True, blank=True)
    source_conversation_id = models.BigIntegerField(null=True, blank=True)
    source_excerpt = models.TextField(blank=True)
    source_deleted = models.BooleanField(default=False)
    # The people, pets and places the proposed text names ({name, type, attributes}):
    # learned only if the memory is approved and still names them.
    entities = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    objects = PendingMemoryQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="pending_user_created"),
            models.Index(fields=["expires_at"], name="pending_expires"),
        ]

    def __str__(self) -> str:
        return f"pending {self.operation}: {self.content[:60]}"

    def provenance(self) -> dict[str, Any]:
        return {
            "message_id": self.source_message_id,
            "conversation_id": self.source_conversation_id,
            "excerpt": self.source_excerpt,
            "conversation_deleted": self.source_deleted,
            "from": "a deleted conversation" if self.source_deleted else "a conversation",
        }


class LocalOnlyRules(models.Model):
    """Which kinds of memory (and which sensitive categories) a person keeps on local models.

    No row: MEMORY_LOCAL_ONLY_DEFAULT (health). `keys` lists what is local only, among the
    memory kinds, "summary" and the categories of memory/exposure.py.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="local_only_rules"
    )
    keys = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "local-only rules"

    def __str__(self) -> str:
        return f"local only: {', '.join(self.keys) or 'nothing'}"
