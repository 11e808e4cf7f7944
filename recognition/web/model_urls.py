"""Staff pages of the model versions (recognition/web/model_views.py)."""

from __future__ import annotations

from django.urls import path

from recognition.web import model_views

app_name = "models"

urlpatterns = [
    path("", model_views.model_list, name="model-list"),
    path("switch/", model_views.model_switch, name="model-switch"),
    path("cancel/", model_views.model_cancel, name="model-cancel"),
    path("drop/", model_views.model_drop, name="model-drop"),
]
