"""Chat JSON API: conversations, messages, and sending a message (JSON or streamed)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import selectors, services
from chat.export import export_everything
from chat.models import Conversation, Message
from chat.views import reply_stream_events, streaming_response
from config import endpoints
from config.api import Pagination, StrictBooleanField, TextField, errors, paginated
from memory import exposure

# Every operation may answer these: no credentials (401), a session without its CSRF token
# (403), a database or Redis restarting (503, with Retry-After).
AUTH_ERRORS = (401, 403, 503)
BODY_ERRORS = (400, 413, 415)


class ConversationOutput(serializers.ModelSerializer):
    endpoint = serializers.SerializerMethodField(
        help_text="The model endpoint that answers (GET /api/endpoints/ lists them)."
    )
    endpoint_local = serializers.SerializerMethodField(
        help_text="Whether that endpoint is local: local-only memories go only to local ones."
    )

    class Meta:
        model = Conversation
        fields = [
            "id",
            "title",
            "incognito",
            "endpoint",
            "endpoint_local",
            "created_at",
            "updated_at",
        ]

    def get_endpoint(self, conversation: Conversation) -> str:
        return exposure.for_conversation(conversation).name

    def get_endpoint_local(self, conversation: Conversation) -> bool:
        return exposure.for_conversation(conversation).local


def endpoint_field() -> serializers.ChoiceField:
    """The configured endpoints' names, read when the serializer is built (so the schema's
    enum is what this server accepts)."""
    names = [endpoint.name for endpoint in endpoints.all_endpoints()]
    return serializers.ChoiceField(
        choices=names,
        required=False,
        help_text="The model endpoint that answers (GET /api/endpoints/ lists them).",
        error_messages={
            "invalid_choice": f"Unknown model endpoint '{{input}}': choose one of "
            f"{', '.join(names)}."
        },
    )


class WithEndpoint(serializers.Serializer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["endpoint"] = endpoint_field()


class MessageOutput(serializers.ModelSerializer):
    finish_reason = serializers.CharField(
        read_only=True,
        help_text="Why the model ended the reply, as the endpoint said: `stop` (it finished), "
        "`length` (the token limit cut it), or empty when not known (a memory command, a "
        "stopped or failed reply, a reply saved before this was recorded).",
    )
    cut_short = serializers.BooleanField(
        read_only=True,
        help_text="A complete reply the token limit ended, likely mid-sentence: show it as cut "
        "short; `POST /api/messages/{id}/continue` goes on from where it stopped.",
    )

    class Meta:
        model = Message
        fields = [
            "id", "conversation", "role", "content", "status", "error", "model",
            "prompt_tokens", "completion_tokens", "created_at", "finish_reason", "cut_short",
        ]  # fmt: skip


class ConversationListApi(APIView):
    pagination_class = Pagination

    class ConversationCreateInput(WithEndpoint):
        title = TextField(max_length=120, required=False, allow_blank=True)
        incognito = StrictBooleanField(required=False, default=False)

    @extend_schema(responses={200: ConversationOutput(many=True), **errors(400, *AUTH_ERRORS)})
    def get(self, request: Request) -> Response:
        conversations = selectors.conversation_list(user=request.user)
        return paginated(request, conversations, ConversationOutput)

    @extend_schema(
        request=ConversationCreateInput,
        responses={201: ConversationOutput, **errors(*BODY_ERRORS, *AUTH_ERRORS)},
    )
    def post(self, request: Request) -> Response:
        data = self.ConversationCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        # Spaces only is no title: the first message then gives one.
        values["title"] = " ".join(values.get("title", "").split())
        conversation = services.start_conversation(user=request.user, **values)
        return Response(ConversationOutput(conversation).data, status=201)


class ConversationDetailApi(APIView):
    class ConversationRenameInput(WithEndpoint):
        title = TextField(max_length=120, required=False)

    @extend_schema(responses={200: ConversationOutput, **errors(404, *AUTH_ERRORS)})
    def get(self, request: Request, conversation_id: int) -> Response:
        conversation = selectors.conversation_for(
            user=request.user, conversation_id=conversation_id
        )
        return Response(ConversationOutput(conversation).data)

    @extend_schema(
        request=ConversationRenameInput,
        responses={200: ConversationOutput, **errors(*BODY_ERRORS, 404, *AUTH_ERRORS)},
        description="Rename the conversation, or choose the model endpoint that answers from "
        "now on; what is left out stays as it is.",
    )
    def patch(self, request: Request, conversation_id: int) -> Response:
        data = self.ConversationRenameInput(data=request.data)
        data.is_valid(raise_exception=True)
        if "title" in data.validated_data:
            services.rename_conversation(
                user=request.user,
                conversation_id=conversation_id,
                title=data.validated_data["title"],
            )
        if "endpoint" in data.validated_data:
            services.set_conversation_endpoint(
                user=request.user,
                conversation_id=conversation_id,
                endpoint=data.validated_data["endpoint"],
            )
        conversation = selectors.conversation_for(
            user=request.user, conversation_id=conversation_id
        )
        return Response(ConversationOutput(conversation).data)

    @extend_schema(responses={204: None, **errors(404, *AUTH_ERRORS)})
    def delete(self, request: Request, conversation_id: int) -> Response:
        services.delete_conversation(user=request.user, conversation_id=conversation_id)
        return Response(status=204)


class MessageInput(serializers.Serializer):
    content = TextField(
        max_length=settings.CHAT_MAX_MESSAGE_CHARS,
        empty_message="Type a message first.",
        help_text="The message; leading and trailing spaces are dropped.",
    )


SEND_ERRORS = errors(*BODY_ERRORS, 404, 429, *AUTH_ERRORS)


class MessageListApi(APIView):
    pagination_class = Pagination

    class SendOutput(serializers.Serializer):
        message = MessageOutput()
        reply = MessageOutput()

    @extend_schema(responses={200: MessageOutput(many=True), **errors(400, 404, *AUTH_ERRORS)})
    def get(self, request: Request, conversation_id: int) -> Response:
        selectors.conversation_for(user=request.user, conversation_id=conversation_id)
        messages = selectors.message_list(user=request.user, conversation_id=conversation_id)
        return paginated(request, messages, MessageOutput)

    @extend_schema(
        request=MessageInput,
        responses={
            201: SendOutput,
            502: OpenApiResponse(SendOutput, description="LLM failed"),
            **SEND_ERRORS,
        },
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
        responses={
            (200, "text/event-stream"): OpenApiResponse(description="SSE stream"),
            **SEND_ERRORS,
        },
        description="Send a message and stream the reply as server-sent events: `token` events "
        "(`{text}`) then one `done` event with the saved reply (`{id, status, content, error, "
        "finish_reason, cut_short}`).",
    )
    def post(self, request: Request, conversation_id: int) -> StreamingHttpResponse:
        data = MessageInput(data=request.data)
        data.is_valid(raise_exception=True)
        message, reply = services.send_message(
            user=request.user,
            conversation_id=conversation_id,
            content=data.validated_data["content"],
        )
        user: Any = request.user
        services.embed_early(user_id=user.pk, text=message.content)
        return streaming_response(
            reply_stream_events(user=user, message_id=reply.pk, render_html=False)
        )


class MessageContinueApi(APIView):
    @extend_schema(
        request=None,
        responses={
            200: MessageOutput,
            502: OpenApiResponse(MessageOutput, description="LLM failed"),
            **errors(404, 409, 429, *AUTH_ERRORS),
        },
        description="Go on with the conversation's latest reply when the token limit cut it "
        "short (`cut_short`), and wait for it: the model's new text is added to the reply's "
        "`content`, and the reply may be cut short again. 409 for a reply that was not cut "
        "short or is not the latest.",
    )
    def post(self, request: Request, message_id: int) -> Response:
        reply = services.continue_and_wait(user=request.user, message_id=message_id)
        body = MessageOutput(reply).data
        return Response(body, status=502 if reply.status == Message.Status.FAILED else 200)


class ExportApi(APIView):
    @extend_schema(
        responses={
            200: OpenApiResponse(description="Everything Mnemo holds about you"),
            **errors(*AUTH_ERRORS),
        },
        description="Profile, memories with provenance and history, summaries, conversations "
        "with every message, and extraction runs, as one JSON document.",
    )
    def get(self, request: Request) -> Response:
        return Response(export_everything(user=request.user))


# `label` cannot be a declared field (Field.label), hence an inline serializer.
EndpointOutput = inline_serializer(
    "Endpoint",
    {
        "name": serializers.CharField(),
        "label": serializers.CharField(),
        "local": serializers.BooleanField(
            help_text="Local endpoints may see local-only memories; hosted ones never do."
        ),
        "default": serializers.BooleanField(),
        "model": serializers.CharField(),
    },
    many=True,
)


class EndpointListApi(APIView):
    @extend_schema(
        responses={200: EndpointOutput, **errors(*AUTH_ERRORS)},
        description="The model endpoints a conversation may use (never their addresses or keys).",
    )
    def get(self, request: Request) -> Response:
        return Response([endpoint.describe() for endpoint in endpoints.all_endpoints()])
