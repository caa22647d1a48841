"""Chat JSON API: conversations, messages, and sending a message (JSON or streamed)."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors, services
from chat.export import export_everything
from chat.models import Conversation, Message
from chat.views import reply_stream_events, streaming_response


class ConversationOutput(serializers.ModelSerializer):
    class Meta:
        model = Conversation
        fields = ["id", "title", "incognito", "created_at", "updated_at"]


class MessageOutput(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = [
            "id", "conversation", "role", "content", "status", "error", "model",
            "prompt_tokens", "completion_tokens", "created_at",
        ]  # fmt: skip


class ConversationListApi(APIView):
    class ConversationCreateInput(serializers.Serializer):
        title = serializers.CharField(max_length=120, required=False, allow_blank=True)
        incognito = serializers.BooleanField(required=False, default=False)

    @extend_schema(responses=ConversationOutput(many=True))
    def get(self, request: Request) -> Response:
        conversations = selectors.conversation_list(user=request.user)
        return Response(ConversationOutput(conversations, many=True).data)

    @extend_schema(request=ConversationCreateInput, responses={201: ConversationOutput})
    def post(self, request: Request) -> Response:
        data = self.ConversationCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        conversation = services.start_conversation(user=request.user, **data.validated_data)
        return Response(ConversationOutput(conversation).data, status=201)


class ConversationDetailApi(APIView):
    class ConversationRenameInput(serializers.Serializer):
        title = serializers.CharField(max_length=120)

    @extend_schema(responses=ConversationOutput)
    def get(self, request: Request, conversation_id: int) -> Response:
        conversation = selectors.conversation_for(
            user=request.user, conversation_id=conversation_id
        )
        return Response(ConversationOutput(conversation).data)

    @extend_schema(request=ConversationRenameInput, responses=ConversationOutput)
    def patch(self, request: Request, conversation_id: int) -> Response:
        data = self.ConversationRenameInput(data=request.data)
        data.is_valid(raise_exception=True)
        conversation = services.rename_conversation(
            user=request.user, conversation_id=conversation_id, title=data.validated_data["title"]
        )
        return Response(ConversationOutput(conversation).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, conversation_id: int) -> Response:
        services.delete_conversation(user=request.user, conversation_id=conversation_id)
        return Response(status=204)


class MessageInput(serializers.Serializer):
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


class MessageListApi(APIView):
    class SendOutput(serializers.Serializer):
        message = MessageOutput()
        reply = MessageOutput()

    @extend_schema(responses=MessageOutput(many=True))
    def get(self, request: Request, conversation_id: int) -> Response:
        selectors.conversation_for(user=request.user, conversation_id=conversation_id)
        messages = selectors.message_list(user=request.user, conversation_id=conversation_id)
        return Response(MessageOutput(messages, many=True).data)

    @extend_schema(
        request=MessageInput,
        responses={201: SendOutput, 502: OpenApiResponse(SendOutput, description="LLM failed")},
        description="Send a message and wait for the whole reply. The message is saved even "
        "when the LLM fails; the reply then has status `failed` and a readable `error`.",
    )
    def post(self, request: Request, conversation_id: int) -> Response:
        data = MessageInput(data=request.data)
        data.is_valid(raise_exception=True)
        message, reply = services.reply_to(
            user=request.user,
            conversation_id=conversation_id,
            content=data.validated_data["content"],
        )
        body = {"message": MessageOutput(message).data, "reply": MessageOutput(reply).data}
        return Response(body, status=502 if reply.status == Message.Status.FAILED else 201)


class MessageStreamApi(APIView):
    @extend_schema(
        request=MessageInput,
        responses={(200, "text/event-stream"): OpenApiResponse(description="SSE stream")},
        description="Send a message and stream the reply as server-sent events: `token` events "
        "(`{text}`) then one `done` event with the saved reply (`{id, status, content, error}`).",
    )
    def post(self, request: Request, conversation_id: int) -> StreamingHttpResponse:
        data = MessageInput(data=request.data)
        data.is_valid(raise_exception=True)
        _message, reply = services.send_message(
            user=request.user,
            conversation_id=conversation_id,
            content=data.validated_data["content"],
        )
        user: Any = request.user
        return streaming_response(
            reply_stream_events(user=user, message_id=reply.pk, render_html=False)
        )


class ExportApi(APIView):
    @extend_schema(
        responses={200: OpenApiResponse(description="Everything Mnemo holds about you")},
        description="Profile, memories with provenance and history, summaries, conversations "
        "with every message, and extraction runs, as one JSON document.",
    )
    def get(self, request: Request) -> Response:
        return Response(export_everything(user=request.user))
