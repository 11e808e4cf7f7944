"""Staff pages of the recognition app: the review queue of rejected faces."""

from __future__ import annotations

from django.urls import path

from recognition.web import review_views

app_name = "review"

urlpatterns = [
    path("", review_views.review_queue, name="review-queue"),
    path("bulk/", review_views.review_bulk, name="review-bulk"),
    path("faces/<int:face_id>/decide/", review_views.review_decide, name="review-decide"),
    path(
        "faces/<int:face_id>/<str:kind>.jpg",
        review_views.review_image,
        name="review-image",
    ),
]
