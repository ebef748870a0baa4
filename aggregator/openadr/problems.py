"""OpenADR ``problem`` responses (RFC 7807 shaped, as the OpenADR 3 API defines them)."""

from __future__ import annotations

import json
from http import HTTPStatus

from aiohttp import web
from pydantic import ValidationError


def problem(status: int, detail: str, **extra: str) -> web.Response:
    """Return a ``problem`` JSON response."""
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return web.json_response(body, status=status)


class ProblemError(Exception):
    """Raised by a handler to answer with a problem response."""

    def __init__(self, status: int, detail: str) -> None:
        """Answer ``status`` with ``detail``."""
        super().__init__(detail)
        self.status = status
        self.detail = detail

    def response(self) -> web.Response:
        """Return the problem response."""
        return problem(self.status, self.detail)


def validation_detail(err: ValidationError) -> str:
    """Return a short, readable list of what is wrong with a body."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
        for error in err.errors(include_url=False)
    )


def parse_json_object(raw: bytes) -> dict[str, object]:
    """Return a JSON object body or raise a 400 problem."""
    try:
        body = json.loads(raw or b"null")
    except ValueError as err:
        raise ProblemError(400, f"the body is not JSON: {err}") from err
    if not isinstance(body, dict):
        raise ProblemError(400, "the body must be a JSON object")
    return body
