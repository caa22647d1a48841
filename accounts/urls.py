from __future__ import annotations

from django.urls import path

from accounts import views

app_name = "accounts"
urlpatterns = [
    path("", views.account, name="account"),
    path("erase", views.erase, name="erase"),
    path("tokens", views.create_token, name="create-token"),
    path("tokens/<int:token_id>/revoke", views.revoke_token, name="revoke-token"),
]
