"""OpenAPI schema post-processing: the error answers every operation can give, documented once.

drf-spectacular documents what each view declares; the answers that come from the framework
(401 without a valid key, 403 for a read-only key or a viewer, 404 for an object you cannot
see, 400 for invalid input, 429 after too many wrong keys) apply to every operation alike.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string", "description": "Why, for a person to read."}},
    "required": ["detail"],
}
VALIDATION_SCHEMA = {
    "type": "object",
    "description": "`detail`, or the invalid fields with what is wrong with each.",
    "additionalProperties": True,
}
WHY = {
    "400": "The request is invalid; the body says why.",
    "401": "No valid API key or session (unknown, revoked or expired key).",
    "403": "You may see this but not change it, or the key is read-only.",
    "404": "No such object (or not visible to you), or no such page of a list.",
    "429": "Too many wrong keys from your address; wait and try again.",
}


def _error(status: str, schema: str) -> dict[str, Any]:
    return {
        "description": WHY[status],
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def add_error_responses(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Error", ERROR_SCHEMA)
    components.setdefault("ValidationError", VALIDATION_SCHEMA)
    for path, methods in result.get("paths", {}).items():
        if not path.startswith("/api/") or path.startswith("/api/schema"):
            continue
        for method, operation in methods.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            wanted = {"401": "Error", "403": "Error", "429": "Error", "400": "ValidationError"}
            paged = any(p.get("name") == "page" for p in operation.get("parameters", []))
            if "{" in path or paged:  # an object you cannot see, or a page past the end
                wanted["404"] = "Error"
            for status, schema in wanted.items():
                if status not in responses or not responses[status].get("content"):
                    responses[status] = _error(status, schema)
    return result
