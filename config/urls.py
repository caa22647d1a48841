"""URL routes: pages, accounts (allauth), the JSON API with its schema and docs, health."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts import api as account_api
from accounts import views as account_views
from chat import views as chat_views
from config.health import healthz
from config.middleware import not_found, server_error

urlpatterns = [
    path("", account_views.home, name="home"),
    path("healthz", healthz, name="healthz"),
    # Before allauth's own: the same login view, answering 429 when guessing is throttled.
    path("accounts/login/", account_views.LoginView.as_view(), name="account_login"),
    path("accounts/", include("allauth.urls")),
    path("account/", include("accounts.urls")),
    path("chat/", include("chat.urls")),
    path("memory/export", chat_views.export, name="export"),
    path("memory/", include("memory.urls")),
    path("api/", include("chat.api_urls")),
    path("api/", include("memory.api_urls")),
    path("api/account/", account_api.AccountApi.as_view(), name="api-account"),
    path("api/tokens/", account_api.TokenListApi.as_view(), name="api-tokens"),
    path("api/tokens/<int:token_id>/", account_api.TokenDetailApi.as_view(), name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's init script as a file (?script): no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/insights/", chat_views.insights, name="admin-insights"),
    path("admin/", admin.site.urls),
]

# Under /api/ an unknown address or a crash answers JSON, as every API response does.
handler404 = not_found
handler500 = server_error
