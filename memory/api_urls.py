from __future__ import annotations

from django.urls import path

from memory import api

urlpatterns = [
    path("memories/", api.MemoryListApi.as_view(), name="api-memories"),
    path("memories/forget-all", api.ForgetAllApi.as_view(), name="api-memories-forget-all"),
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
