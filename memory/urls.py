from __future__ import annotations

from django.urls import path

from memory import review_views, views

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
    path("review/settings", review_views.settings_view, name="review-settings"),
    path("review/all", review_views.answer_all, name="review-all"),
    path("review/<int:pending_id>/", review_views.item, name="review-item"),
    path("review/<int:pending_id>/approve", review_views.approve, name="review-approve"),
    path("review/<int:pending_id>/reject", review_views.reject, name="review-reject"),
]
