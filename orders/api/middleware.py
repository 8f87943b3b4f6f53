from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from .errors import body_too_large, error_response

JSON_TYPES = frozenset({"application/json"})


class JsonApiMiddleware:
    """Under /api/, the protocol's edges, before any view runs and for paths no view serves: a body
    must be JSON (415) and not over the upload limit (413), and every error answers in the API's JSON
    shape, including those Django and django-ninja write themselves (405 for a method a path does not
    take, 400 for a body Django refused)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        refusal = self._refuse_body(request)
        if refusal is not None:
            return refusal
        response = self.get_response(request)
        if response.status_code >= 400 and not _is_json(response):
            return self._as_json(request, response)
        return response

    def _refuse_body(self, request: HttpRequest) -> HttpResponse | None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and length > limit:
            return body_too_large()
        if length and request.content_type not in JSON_TYPES:
            return error_response(
                415, f"Send the body as JSON (Content-Type: application/json), not {request.content_type or 'untyped'}."
            )
        return None

    def _as_json(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if response.status_code == 405:
            converted = error_response(405, f"Method {request.method} is not allowed here.")
            converted["Allow"] = response.get("Allow", "")
            return converted
        return error_response(response.status_code, response.reason_phrase)


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").split(";")[0].strip() in JSON_TYPES
