"""The OpenAPI schema renders without errors and documents the upload; the docs work offline."""

from __future__ import annotations

from django.core.management import call_command
from django.test import Client


def test_it_generates_the_schema_without_warnings(capsys: object, tmp_path: object) -> None:
    out = tmp_path / "schema.yml"  # type: ignore[operator]
    call_command("spectacular", "--file", str(out), "--validate", "--fail-on-warn")
    text = out.read_text()
    assert "/api/galleries/{gallery_id}/photos/:" in text


def test_it_serves_the_schema_with_the_upload_endpoint(client: Client) -> None:
    response = client.get("/api/schema/", headers={"Accept": "application/vnd.oai.openapi+json"})
    assert response.status_code == 200
    schema = response.json()
    upload = schema["paths"]["/api/galleries/{gallery_id}/photos/"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert upload["summary"] == "Upload photos"
    assert {"201", "400"} <= set(upload["responses"])


def test_it_serves_swagger_ui_from_local_static_files(client: Client) -> None:
    html = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn" not in html.lower()
