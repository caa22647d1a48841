"""Account JSON API: erase the account (with the password), after a preview."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services


class AccountApi(APIView):
    class EraseInput(serializers.Serializer):
        password = serializers.CharField()

    class ReceiptOutput(serializers.Serializer):
        erased_at = serializers.DateTimeField()
        counts = serializers.DictField(child=serializers.IntegerField())

    @extend_schema(responses={200: dict}, description="What erasing the account would delete.")
    def get(self, request: Request) -> Response:
        user: Any = request.user
        return Response(
            {"email": user.email, "memory_enabled": user.memory_enabled,
             "erasure_preview": services.erasure_preview(user=user)}
        )  # fmt: skip

    @extend_schema(
        request=EraseInput,
        responses={200: ReceiptOutput},
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
