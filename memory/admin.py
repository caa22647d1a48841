"""Admin console for memory: retention policies, runs, and counts. Never memory text."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from memory import retention
from memory.models import Memory, RetentionPolicy, RetentionRun


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    list_display = (
        "kind",
        "ttl_days",
        "max_per_user",
        "live_memories",
        "expiring_in_7_days",
        "updated_at",
    )
    list_editable = ("ttl_days", "max_per_user")
    actions = ["run_now"]
    readonly_fields = ("kind", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # one policy per kind, created by a migration

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        self._expiring = retention.expiring_soon(days=7)
        return super().changelist_view(request, extra_context)

    @admin.display(description="Live memories")
    def live_memories(self, policy: RetentionPolicy) -> int:
        return Memory.objects.filter(kind=policy.kind).live().count()

    @admin.display(description="Expiring in 7 days")
    def expiring_in_7_days(self, policy: RetentionPolicy) -> int:
        return getattr(self, "_expiring", {}).get(policy.kind, 0)

    def save_model(
        self, request: HttpRequest, obj: RetentionPolicy, form: Any, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        # Policy edits apply to existing memories too, not only to new ones.
        updated = retention.apply_policy(kind=obj.kind)
        messages.info(request, f"{obj}: expiry recomputed for {updated} existing memories.")

    @admin.action(description="Run retention now")
    def run_now(self, request: HttpRequest, queryset: QuerySet[RetentionPolicy]) -> None:
        # Run here rather than on the worker: queued, it waited behind extractions and
        # summaries (90 s measured), and the person who asked wants to see the result. It
        # works in batches and skips locked rows, so it never holds up anyone else.
        run = retention.run_retention(trigger="manual")
        removed = f"{run.removed} {'memory' if run.removed == 1 else 'memories'}"
        messages.success(
            request,
            f"Retention run done: {removed} removed "
            f"({sum(run.expired.values())} expired, {sum(run.trimmed.values())} over a cap).",
        )


@admin.register(RetentionRun)
class RetentionRunAdmin(admin.ModelAdmin):
    list_display = ("started_at", "finished_at", "trigger", "expired", "trimmed", "removed")
    readonly_fields = ("started_at", "finished_at", "trigger", "expired", "trimmed")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
