from __future__ import annotations

from django.urls import path

from memory import views

app_name = "memory"
urlpatterns = [
    path("", views.index, name="index"),
    path("add", views.add, name="add"),
    path("settings", views.settings_view, name="settings"),
    path("forget-all", views.forget_all, name="forget-all"),
    path("learned", views.learned, name="learned"),
    path("<int:memory_id>/edit", views.edit, name="edit"),
    path("<int:memory_id>/delete", views.delete, name="delete"),
    path("<int:memory_id>/pin", views.pin, name="pin"),
    path("<int:memory_id>/history", views.history, name="history"),
    path("<int:memory_id>/local-only", views.local_only, name="local-only"),
    path("local-only", views.local_only_rules, name="local-only-rules"),
    path("summaries/<int:summary_id>/delete", views.delete_summary, name="delete-summary"),
    path("entities/<int:entity_id>/edit", views.edit_entity, name="edit-entity"),
    path("entities/<int:entity_id>/delete", views.delete_entity, name="delete-entity"),
]
