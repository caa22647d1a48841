from __future__ import annotations

from django.urls import path

from chat import api

urlpatterns = [
    path("export/", api.ExportApi.as_view(), name="api-export"),
    path("endpoints/", api.EndpointListApi.as_view(), name="api-endpoints"),
    path("conversations/", api.ConversationListApi.as_view(), name="api-conversations"),
    path(
        "conversations/<int:conversation_id>/",
        api.ConversationDetailApi.as_view(),
        name="api-conversation",
    ),
    path(
        "conversations/<int:conversation_id>/messages/",
        api.MessageListApi.as_view(),
        name="api-messages",
    ),
    path(
        "messages/<int:message_id>/continue",
        api.MessageContinueApi.as_view(),
        name="api-message-continue",
    ),
    path(
        "conversations/<int:conversation_id>/messages/stream",
        api.MessageStreamApi.as_view(),
        name="api-messages-stream",
    ),
]
