"""Memory JSON API: list, search, create, update, pin, delete, history, forget all, settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services as account_services
from config.api import Pagination, StrictBooleanField, TextField, errors, paginated
from memory import entities as entity_services
from memory import exposure, selectors, services
from memory.models import ConversationSummary, Entity, Memory, MemoryEvent


class MemoryOutput(serializers.ModelSerializer):
    provenance = serializers.SerializerMethodField()
    local_only = serializers.SerializerMethodField(
        help_text="Whether it stays on local models: never in a hosted endpoint's prompt."
    )
    local_only_reason = serializers.SerializerMethodField(
        help_text='Why: "marked" (set on this memory), its kind, "summary" or "health"; '
        "null when it may go to any model."
    )
    local_only_setting = serializers.BooleanField(
        source="local_only",
        allow_null=True,
        read_only=True,
        help_text="Set on this memory (true or false), or null to follow your rules.",
    )

    class Meta:
        model = Memory
        fields = [
            "id", "kind", "content", "importance", "pinned", "provenance", "created_at",
            "updated_at", "last_used_at", "confirmations", "expires_at",
            "local_only", "local_only_reason", "local_only_setting",
        ]  # fmt: skip

    def get_provenance(self, memory: Memory) -> dict[str, Any]:
        return memory.provenance()

    def _rules(self, memory: Memory) -> exposure.Rules:
        # Read once per response (the context is shared by a page's items).
        context = self.context if isinstance(self.context, dict) else {}
        if "local_only_rules" not in context:
            context["local_only_rules"] = exposure.rules_for(user=memory.user_id)
        return context["local_only_rules"]

    def get_local_only(self, memory: Memory) -> bool:
        return exposure.memory_reason(memory, self._rules(memory)) is not None

    def get_local_only_reason(self, memory: Memory) -> str | None:
        return exposure.memory_reason(memory, self._rules(memory))


class EventOutput(serializers.ModelSerializer):
    class Meta:
        model = MemoryEvent
        fields = [
            "action",
            "actor",
            "old_content",
            "new_content",
            "source_message_id",
            "created_at",
        ]


class SummaryOutput(serializers.ModelSerializer):
    class Meta:
        model = ConversationSummary
        fields = [
            "id",
            "conversation_id",
            "conversation_title",
            "content",
            "message_count",
            "updated_at",
        ]


# Every operation may answer these: no credentials (401), a session without its CSRF token
# (403), a database or Redis restarting (503, with Retry-After).
AUTH_ERRORS = (401, 403, 503)
BODY_ERRORS = (400, 413, 415)


class MemoryInput(serializers.Serializer):
    content = TextField(
        max_length=settings.MEMORY_MAX_CHARS,
        empty_message="A memory cannot be empty.",
    )
    kind = serializers.ChoiceField(choices=Memory.Kind.choices, default=Memory.Kind.FACT)


class MemoryListApi(APIView):
    pagination_class = Pagination

    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, description="Search by meaning and by words"),
            OpenApiParameter("kind", str, enum=list(Memory.Kind.values)),
        ],
        responses={200: MemoryOutput(many=True), **errors(400, *AUTH_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        query = request.query_params.get("q", "")
        kind = request.query_params.get("kind")  # absent: every kind; empty is not a kind
        if kind is not None and kind not in Memory.Kind.values:
            return Response({"detail": f"Unknown kind '{kind}'."}, status=400)
        if query.strip():
            memories: Any = selectors.memory_search(user=request.user, query=query, kind=kind)
        else:
            memories = selectors.memory_list(user=request.user, kind=kind)
        return paginated(request, memories, MemoryOutput)

    @extend_schema(
        request=MemoryInput, responses={201: MemoryOutput, **errors(*BODY_ERRORS, *AUTH_ERRORS)}
    )
    def post(self, request: Request) -> Response:
        data = MemoryInput(data=request.data)
        data.is_valid(raise_exception=True)
        memory = services.remember(user=request.user, importance=0.7, **data.validated_data)
        return Response(MemoryOutput(memory).data, status=201)


class MemoryDetailApi(APIView):
    class MemoryUpdateInput(serializers.Serializer):
        content = TextField(
            max_length=settings.MEMORY_MAX_CHARS,
            required=False,
            empty_message="A memory cannot be empty.",
        )
        kind = serializers.ChoiceField(choices=Memory.Kind.choices, required=False)
        pinned = StrictBooleanField(required=False)
        local_only = StrictBooleanField(
            required=False,
            allow_null=True,
            help_text="true: never to a hosted model; false: to any model; null: follow your "
            "rules per kind and category.",
        )

    @extend_schema(responses={200: MemoryOutput, **errors(404, *AUTH_ERRORS)})
    def get(self, request: Request, memory_id: int) -> Response:
        return Response(
            MemoryOutput(selectors.memory_for(user=request.user, memory_id=memory_id)).data
        )

    @extend_schema(
        request=MemoryUpdateInput,
        responses={200: MemoryOutput, **errors(*BODY_ERRORS, 404, *AUTH_ERRORS)},
        description="Change any of content, kind, pinned and local_only; the others stay as "
        "they are.",
    )
    def patch(self, request: Request, memory_id: int) -> Response:
        data = self.MemoryUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if not values:
            memory_now = selectors.memory_for(user=request.user, memory_id=memory_id)
            return Response(MemoryOutput(memory_now).data)
        # No lookup first: a memory deleted meanwhile (or not theirs) makes the service raise
        # MemoryGone, a 404 whose message says what happened.
        memory: Memory | None = None
        if "content" in values or "kind" in values:
            memory = services.update_memory(
                user=request.user,
                memory_id=memory_id,
                content=values.get("content"),
                kind=values.get("kind"),
            )
        if "pinned" in values:
            memory = services.set_pinned(
                user=request.user, memory_id=memory_id, pinned=values["pinned"]
            )
        if "local_only" in values:
            memory = exposure.set_memory_local_only(
                user=request.user, memory_id=memory_id, local_only=values["local_only"]
            )
        return Response(MemoryOutput(memory).data)

    @extend_schema(responses={204: None, **errors(404, *AUTH_ERRORS)})
    def delete(self, request: Request, memory_id: int) -> Response:
        services.forget(user=request.user, memory_id=memory_id)
        return Response(status=204)


class MemoryHistoryApi(APIView):
    pagination_class = Pagination

    @extend_schema(
        responses={200: EventOutput(many=True), **errors(400, 404, *AUTH_ERRORS)},
        description="How the memory changed. A deleted memory is gone, with its history: 404.",
    )
    def get(self, request: Request, memory_id: int) -> Response:
        selectors.memory_for(user=request.user, memory_id=memory_id)  # 404 if not theirs or gone
        events = selectors.memory_history(user=request.user, memory_id=memory_id)
        return paginated(request, events, EventOutput)


class ForgetAllApi(APIView):
    class ForgetAllInput(serializers.Serializer):
        confirm = serializers.ChoiceField(
            choices=[(True, "true")], help_text="Must be true: forgetting cannot be undone."
        )

    @extend_schema(
        request=ForgetAllInput,
        responses={
            200: inline_serializer("ForgetAllOutput", {"deleted": serializers.IntegerField()}),
            **errors(*BODY_ERRORS, *AUTH_ERRORS),
        },
    )
    def post(self, request: Request) -> Response:
        data = self.ForgetAllInput(data=request.data)
        data.is_valid(raise_exception=True)
        if not data.validated_data["confirm"]:
            return Response({"detail": 'Send {"confirm": true} to forget everything.'}, status=400)
        return Response({"deleted": services.forget_all(user=request.user)})


class SummaryListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses={200: SummaryOutput(many=True), **errors(400, *AUTH_ERRORS)})
    def get(self, request: Request) -> Response:
        return paginated(request, selectors.summary_list(user=request.user), SummaryOutput)


class SummaryDetailApi(APIView):
    @extend_schema(responses={204: None, **errors(404, *AUTH_ERRORS)})
    def delete(self, request: Request, summary_id: int) -> Response:
        services.delete_summary(user=request.user, summary_id=summary_id)
        return Response(status=204)


class MemorySettingsApi(APIView):
    class MemorySettings(serializers.Serializer):
        memory_enabled = StrictBooleanField()
        ask_before_remembering = StrictBooleanField(
            required=False,
            help_text="When true, what Mnemo learns waits under /api/memories/pending/ until "
            "you approve it. Left out: unchanged.",
        )

    @staticmethod
    def _settings(user: Any) -> dict[str, bool]:
        return {
            "memory_enabled": user.memory_enabled,
            "ask_before_remembering": user.ask_before_remembering,
        }

    @extend_schema(responses={200: MemorySettings, **errors(*AUTH_ERRORS)})
    def get(self, request: Request) -> Response:
        return Response(self._settings(request.user))

    @extend_schema(
        request=MemorySettings,
        responses={200: MemorySettings, **errors(*BODY_ERRORS, *AUTH_ERRORS)},
    )
    def put(self, request: Request) -> Response:
        data = self.MemorySettings(data=request.data)
        data.is_valid(raise_exception=True)
        user: Any = request.user
        account_services.set_memory_enabled(
            user=user, enabled=data.validated_data["memory_enabled"]
        )
        if "ask_before_remembering" in data.validated_data:
            account_services.set_ask_before_remembering(
                user=user, enabled=data.validated_data["ask_before_remembering"]
            )
        return Response(self._settings(user))


class EntityOutput(serializers.ModelSerializer):
    class Meta:
        model = Entity
        fields = ["id", "name", "type", "attributes", "created_at", "updated_at"]


class EntityListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses={200: EntityOutput(many=True), **errors(400, *AUTH_ERRORS)})
    def get(self, request: Request) -> Response:
        return paginated(request, selectors.entity_list(user=request.user), EntityOutput)


class EntityDetailApi(APIView):
    class EntityUpdateInput(serializers.Serializer):
        name = TextField(max_length=120, required=False)
        attributes = serializers.DictField(
            child=TextField(max_length=300),
            required=False,
            help_text="Replaces every attribute; leave it out to keep them.",
        )

    @extend_schema(
        request=EntityUpdateInput,
        responses={200: EntityOutput, **errors(*BODY_ERRORS, 404, 409, *AUTH_ERRORS)},
        description="Rename the entity or replace its attributes. Another of your entities "
        "with the same name is a 409 that names it.",
    )
    def patch(self, request: Request, entity_id: int) -> Response:
        data = self.EntityUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        entity = entity_services.update_entity(
            user=request.user,
            entity_id=entity_id,
            name=data.validated_data.get("name"),
            attributes=data.validated_data.get("attributes"),
        )
        return Response(EntityOutput(entity).data)

    @extend_schema(responses={204: None, **errors(404, *AUTH_ERRORS)})
    def delete(self, request: Request, entity_id: int) -> Response:
        entity_services.delete_entity(user=request.user, entity_id=entity_id)
        return Response(status=204)


class LocalOnlyRules(serializers.Serializer):
    """One optional boolean per kind and category: true keeps it off hosted models."""

    def __init__(self, *args: Any, required: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, required=required, **kwargs)
        for key, label in exposure.KEYS:
            self.fields[key] = StrictBooleanField(required=required, help_text=label)


class LocalOnlyApi(APIView):
    """Which memory kinds (and the health category) stay on local models."""

    class LocalOnlyRulesOutput(serializers.Serializer):
        local_only = LocalOnlyRules()

    class LocalOnlyRulesInput(serializers.Serializer):
        local_only = LocalOnlyRules(
            required=False, help_text="Those given change; the others stay as they are."
        )

    @extend_schema(responses={200: LocalOnlyRulesOutput, **errors(*AUTH_ERRORS)})
    def get(self, request: Request) -> Response:
        return Response({"local_only": exposure.rules_for(user=request.user).as_dict()})

    @extend_schema(
        request=LocalOnlyRulesInput,
        responses={200: LocalOnlyRulesOutput, **errors(*BODY_ERRORS, *AUTH_ERRORS)},
        description="Change what stays on local models: memory kinds, summaries and health.",
    )
    def put(self, request: Request) -> Response:
        data = self.LocalOnlyRulesInput(data=request.data)
        data.is_valid(raise_exception=True)
        changes = data.validated_data.get("local_only") or {}
        rules = exposure.set_rules(user=request.user, local_only=dict(changes))
        return Response({"local_only": rules.as_dict()})
