"""Account JSON API: erase the account (with the password), and personal API tokens."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services, tokens
from accounts.models import ApiToken
from config.api import Pagination, TextField, errors, paginated

AUTH_ERRORS = (401, 403, 503)


class AccountApi(APIView):
    class EraseInput(serializers.Serializer):
        password = TextField()

    class ReceiptOutput(serializers.Serializer):
        erased_at = serializers.DateTimeField()
        counts = serializers.DictField(child=serializers.IntegerField())

    @extend_schema(
        responses={
            200: inline_serializer(
                "AccountOutput",
                {
                    "email": serializers.EmailField(),
                    "memory_enabled": serializers.BooleanField(),
                    "ask_before_remembering": serializers.BooleanField(),
                    "erasure_preview": serializers.DictField(child=serializers.IntegerField()),
                },
            ),
            **errors(*AUTH_ERRORS),
        },
        description="What erasing the account would delete.",
    )
    def get(self, request: Request) -> Response:
        user: Any = request.user
        return Response(
            {"email": user.email, "memory_enabled": user.memory_enabled,
             "ask_before_remembering": user.ask_before_remembering,
             "erasure_preview": services.erasure_preview(user=user)}
        )  # fmt: skip

    @extend_schema(
        request=EraseInput,
        responses={200: ReceiptOutput, **errors(400, 413, 415, *AUTH_ERRORS)},
        description="Erase the account and everything in it, in one transaction. Requires the "
        "password. Returns what was erased.",
    )
    def delete(self, request: Request) -> Response:
        data = self.EraseInput(data=request.data)
        data.is_valid(raise_exception=True)
        user: Any = request.user
        if not user.check_password(data.validated_data["password"]):
            return Response({"detail": "That password is not correct."}, status=400)
        receipt = services.erase_account(user=user, host=request.get_host())
        return Response({"erased_at": receipt.erased_at, "counts": receipt.counts})


class TokenOutput(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at"]


class TokenListApi(APIView):
    pagination_class = Pagination

    class TokenCreateInput(serializers.Serializer):
        name = TextField(max_length=100)

    class TokenCreatedOutput(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        token = serializers.CharField(help_text="Shown this once; only its hash is kept.")
        created_at = serializers.DateTimeField()

    @extend_schema(
        responses={200: TokenOutput(many=True), **errors(400, *AUTH_ERRORS)},
        description="Your personal API tokens (never the tokens themselves).",
    )
    def get(self, request: Request) -> Response:
        return paginated(request, tokens.token_list(user=request.user), TokenOutput)

    @extend_schema(
        request=TokenCreateInput,
        responses={201: TokenCreatedOutput, **errors(400, 409, 413, 415, *AUTH_ERRORS)},
        description="Create a token for `Authorization: Bearer <token>`. The token is in this "
        "response only.",
    )
    def post(self, request: Request) -> Response:
        data = self.TokenCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        user: Any = request.user
        token, text = tokens.create_token(user=user, name=data.validated_data["name"])
        return Response(
            {"id": token.pk, "name": token.name, "token": text, "created_at": token.created_at},
            status=201,
        )


class TokenDetailApi(APIView):
    @extend_schema(responses={204: None, **errors(404, *AUTH_ERRORS)}, description="Revoke.")
    def delete(self, request: Request, token_id: int) -> Response:
        user: Any = request.user
        tokens.revoke_token(user=user, token_id=token_id)
        return Response(status=204)
