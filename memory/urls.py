from __future__ import annotations

from django.urls import path

from memory import views

app_name = "memory"
urlpatterns = [
    path("", views.index, name="index"),
]
