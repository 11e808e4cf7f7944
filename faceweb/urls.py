from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from faceweb import views as site_views
from gallery.views import accounts
from recognition.web.api import face_search as face_search_api

handler400 = "faceweb.views.bad_request"
handler404 = "faceweb.views.not_found"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", site_views.health, name="health"),
    path("accounts/", include(accounts.urlpatterns)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file: the Content-Security-Policy allows
    # no inline scripts.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/search/", face_search_api, name="api-face-search"),
    path("api/", include("gallery.api_urls")),
    path("review/", include("recognition.web.urls")),
    path("models/", include("recognition.web.model_urls")),
    path("", include("gallery.urls")),
]
