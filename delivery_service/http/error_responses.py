"""Error bodies people can read: every `ServiceError` through one handler, and readable 422s.

A 422 keeps FastAPI's documented `{"detail": [{"loc", "msg", "type"}]}` shape, so the OpenAPI schema
stays true, but each message says what to send instead, and the rejected input (which may be a 1 MB
requirement) is not sent back.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from delivery_service.service_errors import ServiceError

_EXAMPLE_BODY = '{"user_requirement": "...", "skip_confirmation": true}'

_EMPTY_BODY = "The request body is empty. Send a JSON object such as " + _EXAMPLE_BODY + "."
_MESSAGES = {
    "json_invalid": "The request body is not valid JSON ({error}). Send a JSON object such as " + _EXAMPLE_BODY + ".",
    "model_attributes_type": f"The request body must be a JSON object such as {_EXAMPLE_BODY}, "
    "sent with Content-Type: application/json.",
    "dict_type": "The request body must be a JSON object such as " + _EXAMPLE_BODY + ".",
    "missing": "The field {field} is required.",
    "string_type": "The field {field} must be a string.",
    "bool_type": "The field {field} must be true or false.",
    "int_type": "The field {field} must be a whole number.",
    "int_parsing": "The field {field} must be a whole number.",
    "int_parsing_size": "The field {field} must be a whole number of at most 4300 digits.",
    "extra_forbidden": "Unknown field {field}: remove it (see /docs for the accepted fields).",
    "string_too_long": "The field {field} is too long: at most {max_length} characters.",
    "string_pattern_mismatch": "The field {field} must match the pattern {pattern} (see /docs).",
    "less_than_equal": "The field {field} must be at most {le}.",
    "greater_than_equal": "The field {field} must be at least {ge}.",
}


def _field_name(loc: tuple[Any, ...]) -> str:
    names = [str(part) for part in loc if part not in ("body", "query", "path", "header")]
    return ".".join(names) or "body"


def readable_error(error: dict[str, Any]) -> dict[str, Any]:
    """One validation error with a plain message and no echoed input."""
    loc = tuple(error.get("loc", ()))
    kind = str(error.get("type", "value_error"))
    template = _EMPTY_BODY if loc == ("body",) and kind == "missing" else _MESSAGES.get(kind)
    ctx = error.get("ctx") or {}
    if template is not None:
        message = template.replace("{field}", _field_name(loc))
        for key, value in {"error": "parse error", **ctx}.items():
            message = message.replace("{" + key + "}", str(value))
        if loc[-1:] == ("user_requirement",) and kind == "string_too_long":
            message += " The limit is MAX_REQUIREMENT_CHARS."
        if loc[-1:] in (("Last-Event-ID",), ("last_event_id",)) and kind == "string_pattern_mismatch":
            message = f"The {loc[0]} {_field_name(loc)} must be an event sequence number (digits only)."
    else:
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if kind != "value_error":
            message = f"{_field_name(loc)}: {message}"
    return {"loc": list(loc), "msg": message, "type": kind}


# FastAPI answers 400 with this text when the body cannot be parsed at all (JSON nested too deeply for
# the parser, for one); to clients that is a body that is not usable JSON, which the API answers with 422.
FASTAPI_UNPARSABLE_BODY = "There was an error parsing the body"


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's own handler, except for an unparsable body, which gets the readable 422."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == FASTAPI_UNPARSABLE_BODY:
        error = {
            "loc": ["body"],
            "msg": "The request body could not be parsed as JSON (nested too deeply?). Send "
            "a flat JSON object such as " + _EXAMPLE_BODY + ".",
            "type": "json_invalid",
        }
        return JSONResponse(status_code=422, content={"detail": [error]})
    return await http_exception_handler(request, exc)


async def request_validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [readable_error(error) for error in exc.errors()]
    return JSONResponse(status_code=422, content=jsonable_encoder({"detail": errors}))


def service_error_response(exc: ServiceError) -> JSONResponse:
    """The JSON error of a refusal: its detail, its status and (when it has one) its Retry-After."""
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)


async def service_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return service_error_response(exc)
