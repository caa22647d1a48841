from __future__ import annotations

from django.urls import path

from chat import views

app_name = "chat"
urlpatterns = [
    path("", views.index, name="index"),
    path("new", views.new_conversation, name="new"),
    path("list", views.conversation_list, name="list"),
    path("c/<int:conversation_id>/", views.conversation, name="conversation"),
    path("c/<int:conversation_id>/send", views.send, name="send"),
    path("c/<int:conversation_id>/rename", views.rename, name="rename"),
    path("c/<int:conversation_id>/delete", views.delete, name="delete"),
    path("c/<int:conversation_id>/endpoint", views.set_endpoint, name="endpoint"),
    path("m/<int:message_id>/", views.message, name="message"),
    path("m/<int:message_id>/stream", views.stream, name="stream"),
    path("m/<int:message_id>/stop", views.stop, name="stop"),
    path("m/<int:message_id>/retry", views.retry, name="retry"),
    path("m/<int:message_id>/continue", views.continue_reply, name="continue"),
]
