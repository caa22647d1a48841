"""Review before saving, in the JSON API: list pending memories, approve, edit, reject."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import Pagination, TextField, errors
from memory import review
from memory.api import AUTH_ERRORS, BODY_ERRORS, MemoryOutput
from memory.models import Memory, PendingMemory

TargetOutput = inline_serializer(
    "PendingTarget", {"id": serializers.IntegerField(), "content": serializers.CharField()}
)
ProvenanceOutput = inline_serializer(
    "PendingProvenance",
    {
        "message_id": serializers.IntegerField(allow_null=True),
        "conversation_id": serializers.IntegerField(allow_null=True),
        "excerpt": serializers.CharField(help_text="Your words it came from (secrets masked)."),
        "conversation_deleted": serializers.BooleanField(),
        "from": serializers.CharField(),
    },
)
APPLIES = ["add", "update", "delete", "confirm", "nothing"]
MAX_ID = 2**63 - 1


class PendingOutput(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    operation = serializers.ChoiceField(
        source="pending.operation",
        choices=PendingMemory.Operation.choices,
        help_text="What extraction proposed: add a memory, replace (update) one, forget "
        "(delete) one, or confirm one you said again.",
    )
    applies_as = serializers.ChoiceField(
        choices=APPLIES,
        help_text="What approving would do now: an update or confirmation whose memory is "
        "gone adds the text; a deletion whose memory is gone does nothing.",
    )
    kind = serializers.ChoiceField(source="pending.kind", choices=Memory.Kind.choices)
    content = serializers.CharField(source="pending.content", help_text="The proposed text.")
    target = serializers.SerializerMethodField(
        help_text="The memory it would change, as it reads now (null for an addition, or "
        "when that memory is gone)."
    )
    question = serializers.CharField(
        help_text="What it would change, in words: “Replace “I live in Lisbon” with “I live in "
        "Berlin”?”"
    )
    provenance = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField(source="pending.created_at")
    expires_at = serializers.DateTimeField(
        source="pending.expires_at", help_text="Dropped unread after this if not answered."
    )

    @extend_schema_field(TargetOutput)
    def get_target(self, item: review.ReviewItem) -> dict[str, Any] | None:
        if not item.target_exists:
            return None
        return {"id": item.pending.target_id, "content": item.target_content}

    @extend_schema_field(ProvenanceOutput)
    def get_provenance(self, item: review.ReviewItem) -> dict[str, Any]:
        return item.pending.provenance()


class ApprovedOutput(serializers.Serializer):
    id = serializers.IntegerField(source="pending_id", help_text="The pending item answered.")
    applied = serializers.ChoiceField(choices=APPLIES, help_text="What approving did.")
    memory = MemoryOutput(allow_null=True, help_text="The memory added or changed (null if none).")


class PendingListApi(APIView):
    pagination_class = Pagination

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "message",
                {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                description="Only what this message of yours taught",
            )
        ],
        responses={200: PendingOutput(many=True), **errors(400, *AUTH_ERRORS)},
        description="Memories waiting for your review (“Ask me before remembering”), oldest "
        "first. None of them is recalled or used until approved.",
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("message")
        if raw is not None and (not raw.isdigit() or not 1 <= int(raw) <= MAX_ID):
            return Response({"detail": "message must be a message id."}, status=400)
        items = review.pending_items(
            user=request.user, source_message_id=int(raw) if raw is not None else None
        )
        # Paged in SQL, then each page's items read with the memories they would change.
        pagination = Pagination()
        page: Any = pagination.paginate_queryset(items, request) or []
        shown = review.with_targets(request.user, list(page))
        return pagination.get_paginated_response(PendingOutput(shown, many=True).data)


class PendingDetailApi(APIView):
    @extend_schema(responses={200: PendingOutput, **errors(404, *AUTH_ERRORS)})
    def get(self, request: Request, pending_id: int) -> Response:
        item = review.pending_for(user=request.user, pending_id=pending_id)
        return Response(PendingOutput(item).data)

    @extend_schema(
        responses={204: None, **errors(404, *AUTH_ERRORS)},
        description="Reject: the item is deleted and no copy of its words remains.",
    )
    def delete(self, request: Request, pending_id: int) -> Response:
        review.reject(user=request.user, pending_id=pending_id)
        return Response(status=204)


class PendingApproveApi(APIView):
    class ApproveInput(serializers.Serializer):
        content = TextField(
            max_length=settings.MEMORY_MAX_CHARS,
            required=False,
            empty_message="A memory cannot be empty.",
            help_text="Your edit of the text; leave it out to approve as proposed.",
        )
        kind = serializers.ChoiceField(choices=Memory.Kind.choices, required=False)

    @extend_schema(
        request=ApproveInput,
        responses={200: ApprovedOutput, **errors(*BODY_ERRORS, 404, 409, *AUTH_ERRORS)},
        description="Approve, or edit and approve. An update, deletion or confirmation whose "
        "memory was deleted meanwhile applies as an addition (a deletion as nothing). One whose "
        "memory was edited since it was proposed is a 409 saying what the memory says now; "
        "the item then compares against that version, so approving again applies it.",
    )
    def post(self, request: Request, pending_id: int) -> Response:
        data = self.ApproveInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = review.approve(
            user=request.user,
            pending_id=pending_id,
            content=data.validated_data.get("content"),
            kind=data.validated_data.get("kind"),
        )
        return Response(ApprovedOutput(result).data)


class PendingRejectApi(APIView):
    @extend_schema(
        request=None,
        responses={204: None, **errors(404, *AUTH_ERRORS)},
        description="Reject (the same as DELETE on the item).",
    )
    def post(self, request: Request, pending_id: int) -> Response:
        review.reject(user=request.user, pending_id=pending_id)
        return Response(status=204)


class AnswerAllInput(serializers.Serializer):
    message_id = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_ID,
        help_text="Only what this message of yours taught.",
    )


class PendingApproveAllApi(APIView):
    @extend_schema(
        request=AnswerAllInput,
        responses={
            200: inline_serializer(
                "ApproveAllOutput",
                {
                    "approved": ApprovedOutput(many=True),
                    "conflicts": serializers.DictField(
                        child=serializers.CharField(),
                        help_text="Items left waiting because their memory changed since, "
                        "by id, with what it says now.",
                    ),
                },
            ),
            **errors(*BODY_ERRORS, *AUTH_ERRORS),
        },
        description="Approve every item waiting (or one message's), oldest first.",
    )
    def post(self, request: Request) -> Response:
        data = AnswerAllInput(data=request.data)
        data.is_valid(raise_exception=True)
        answered = review.approve_all(
            user=request.user, source_message_id=data.validated_data.get("message_id")
        )
        return Response(
            {
                "approved": ApprovedOutput(answered.approved, many=True).data,
                "conflicts": {str(k): v for k, v in answered.conflicts.items()},
            }
        )


class PendingRejectAllApi(APIView):
    @extend_schema(
        request=AnswerAllInput,
        responses={
            200: inline_serializer("RejectAllOutput", {"rejected": serializers.IntegerField()}),
            **errors(*BODY_ERRORS, *AUTH_ERRORS),
        },
        description="Reject every item waiting (or one message's); no copy of their words remains.",
    )
    def post(self, request: Request) -> Response:
        data = AnswerAllInput(data=request.data)
        data.is_valid(raise_exception=True)
        rejected = review.reject_all(
            user=request.user, source_message_id=data.validated_data.get("message_id")
        )
        return Response({"rejected": rejected})
