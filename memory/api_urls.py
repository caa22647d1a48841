from __future__ import annotations

from django.urls import path

from memory import api, review_api

urlpatterns = [
    path("memories/", api.MemoryListApi.as_view(), name="api-memories"),
    path("memories/forget-all", api.ForgetAllApi.as_view(), name="api-memories-forget-all"),
    path("memories/pending/", review_api.PendingListApi.as_view(), name="api-pending"),
    path(
        "memories/pending/approve-all",
        review_api.PendingApproveAllApi.as_view(),
        name="api-pending-approve-all",
    ),
    path(
        "memories/pending/reject-all",
        review_api.PendingRejectAllApi.as_view(),
        name="api-pending-reject-all",
    ),
    path(
        "memories/pending/<int:pending_id>/",
        review_api.PendingDetailApi.as_view(),
        name="api-pending-item",
    ),
    path(
        "memories/pending/<int:pending_id>/approve",
        review_api.PendingApproveApi.as_view(),
        name="api-pending-approve",
    ),
    path(
        "memories/pending/<int:pending_id>/reject",
        review_api.PendingRejectApi.as_view(),
        name="api-pending-reject",
    ),
    path("memories/<int:memory_id>/", api.MemoryDetailApi.as_view(), name="api-memory"),
    path(
        "memories/<int:memory_id>/history/",
        api.MemoryHistoryApi.as_view(),
        name="api-memory-history",
    ),
    path("summaries/", api.SummaryListApi.as_view(), name="api-summaries"),
    path("summaries/<int:summary_id>/", api.SummaryDetailApi.as_view(), name="api-summary"),
    path("settings/", api.MemorySettingsApi.as_view(), name="api-settings"),
    path("local-only/", api.LocalOnlyApi.as_view(), name="api-local-only"),
    path("entities/", api.EntityListApi.as_view(), name="api-entities"),
    path("entities/<int:entity_id>/", api.EntityDetailApi.as_view(), name="api-entity"),
]
