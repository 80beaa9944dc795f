"""The machinery of /api/v1: bearer tokens, scopes, rate limits, JSON bodies and problems.

Each endpoint is declared once with `operation(...)`: the route, the scope it needs,
the pydantic models of its query, body and answer. The same table drives the request
checks here and the OpenAPI document (openapi.py), so the document cannot drift from
what the server does. Every refusal is an RFC 9457 problem (application/problem+json)
with a stable `type`; no input reaches a 5xx.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Response, g, request
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails
from werkzeug.exceptions import HTTPException

from service import ratelimit
from service.access import tokens
from service.access.tokens import Scope
from service.addresses import InvalidAddress
from service.audience.subscribers import InvalidTag
from service.editions.store import EditionError, EditionInvalid, EditionLocked
from service.models import ApiToken
from service.newsletters import UnknownNewsletter
from service.sending.lifecycle import IllegalTransition
from service.sending.outbox import SendError
from service.team.audit import Who
from service.team.editors import client_network
from service.text import UnusableText
from service.web.deps import db, settings

PREFIX = "/api/v1"
PROBLEMS = "https://hebdo.dev/problems/"
BODY_LIMIT = 1024 * 1024  # 1 MiB: a bulk of 1,000 readers fits many times over
RATE_WINDOW = 60
PROBLEM_TYPE = "application/problem+json"

blueprint = Blueprint("api", __name__, url_prefix=PREFIX)

V = TypeVar("V", bound=Callable[..., Any])


class Strict(BaseModel):
    """A request body: JSON types only (no "1" for 1), unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class QueryModel(BaseModel):
    """Query-string parameters: read from text, unknown ones refused."""

    model_config = ConfigDict(extra="forbid")


class Answer(BaseModel):
    """A response body."""


class FieldProblem(Answer):
    field: str
    message: str


class Problem(Answer):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str = ""
    errors: list[FieldProblem] = []


# The stable problem types: (status, slug, title).
_TYPES: dict[str, tuple[int, str]] = {
    "bad-request": (400, "Bad request"),
    "malformed-json": (400, "The body is not valid JSON"),
    "unauthorized": (401, "A valid API token is needed"),
    "forbidden": (403, "The token does not allow this"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "conflict": (409, "The object is not in a state that allows this"),
    "too-large": (413, "The body is too large"),
    "unsupported-media-type": (415, "Send the body as application/json"),
    "validation": (422, "The request breaks the API's rules"),
    "rate-limited": (429, "Too many requests"),
    "server-error": (500, "Internal error"),
}
_BY_STATUS = {status: slug for slug, (status, _title) in _TYPES.items()}


class ApiProblem(Exception):
    """Raised by views and checks; becomes a problem response."""

    def __init__(
        self,
        kind: str,
        detail: str = "",
        *,
        errors: list[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail or kind)
        self.kind = kind
        self.detail = detail
        self.errors = errors or []
        self.headers = dict(headers or {})


def problem_response(problem: ApiProblem) -> Response:
    """The problem as an application/problem+json response."""
    status, title = _TYPES[problem.kind]
    body = Problem(
        type=PROBLEMS + problem.kind,
        title=title,
        status=status,
        detail=problem.detail[:1000],
        errors=[FieldProblem(field=f[:200], message=m[:500]) for f, m in problem.errors],
    )
    response = Response(json.dumps(body.model_dump(mode="json")), status, mimetype=PROBLEM_TYPE)
    for name, value in problem.headers.items():
        response.headers[name] = value
    _rate_headers(response)
    return response


def http_problem(error: HTTPException) -> Response | HTTPException:
    """Werkzeug's errors (404, 405, 413 …) under /api/ as problems; elsewhere unchanged."""
    if not request.path.startswith(PREFIX + "/") and request.path != PREFIX:
        return error
    status = error.code or 500
    kind = _BY_STATUS.get(status, "bad-request" if status < 500 else "server-error")
    headers = {}
    if status == 405 and error.response is None:
        allowed = getattr(error, "valid_methods", None) or []
        headers["Allow"] = ", ".join(allowed)
    return problem_response(ApiProblem(kind, error.description or "", headers=headers))


# --- validation errors ----------------------------------------------------------------


def where(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a field path: subscribers[3].email."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "nullable", "union", "is-instance", "json-or")) or (
            part[:1].isupper()
        ):
            continue
        else:
            out += f".{part}" if out else part
    return out


def field_errors(errors: list[ErrorDetails], prefix: str = "") -> list[tuple[str, str]]:
    """(field, message) pairs of a pydantic validation error."""
    found: list[tuple[str, str]] = []
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden":
            name = where(loc)
            item = (prefix + name, "unknown field")
        else:
            item = (prefix + where(loc), error["msg"])
        if item not in found:
            found.append(item)
    return found


def _validation(exc: ValidationError, prefix: str = "") -> ApiProblem:
    errors = exc.errors(include_url=False, include_input=False)
    if any(error["type"] == "json_invalid" for error in errors):
        return ApiProblem("malformed-json", str(errors[0]["msg"])[:300])
    return ApiProblem("validation", errors=field_errors(errors, prefix))


# --- bodies -------------------------------------------------------------------------


def raw_body() -> bytes:
    """The request's bytes, refused past BODY_LIMIT or when not JSON."""
    if request.content_length is not None and request.content_length > BODY_LIMIT:
        raise ApiProblem("too-large", f"at most {BODY_LIMIT} bytes")
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiProblem("unsupported-media-type", "send Content-Type: application/json")
    request.max_content_length = BODY_LIMIT
    data = request.get_data(cache=True)
    if len(data) > BODY_LIMIT:
        raise ApiProblem("too-large", f"at most {BODY_LIMIT} bytes")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_body() -> Any:
    """The body parsed as JSON (for documents validated by the domain itself)."""
    return _parse(raw_body())


def _parse(data: bytes) -> Any:
    if not data.strip():
        raise ApiProblem("malformed-json", "the body is empty")
    try:
        return json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        # ValueError: bad UTF-8, bad JSON, NaN, and integers past Python's digit limit.
        raise ApiProblem("malformed-json", str(exc)[:300]) from exc


def parse_body(model: type[Strict]) -> Strict:
    """The body validated into the operation's model."""
    data = raw_body()
    # Python's parser first: it alone refuses NaN and Infinity, which are not JSON.
    _parse(data)
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise _validation(exc) from exc


def parse_query(model: type[QueryModel]) -> QueryModel:
    """The query string validated into the operation's model (one value per name)."""
    values: dict[str, str] = {}
    for name, items in request.args.lists():
        if len(items) > 1:
            raise ApiProblem("validation", errors=[(name, "give this parameter once")])
        values[name] = items[0]
    try:
        return model.model_validate_strings(values)
    except ValidationError as exc:
        raise _validation(exc) from exc


# --- the operation table ----------------------------------------------------------------


@dataclass
class Operation:
    """One endpoint as the OpenAPI document describes it."""

    rule: str  # Flask's rule: /subscribers/<int:subscriber_id>
    method: str
    name: str
    summary: str
    tag: str
    scope: Scope | None
    status: int
    answer: type[BaseModel] | None
    body: type[Strict] | None = None
    body_schema: dict[str, Any] | None = None  # a document the domain validates itself
    query: type[QueryModel] | None = None
    statuses: tuple[int, ...] = ()  # other successful answers
    problems: tuple[int, ...] = field(default_factory=tuple)


OPERATIONS: list[Operation] = []


def operation(
    rule: str,
    method: str,
    *,
    summary: str,
    tag: str,
    scope: Scope | None,
    answer: type[BaseModel] | None,
    status: int = 200,
    body: type[Strict] | None = None,
    body_schema: dict[str, Any] | None = None,
    query: type[QueryModel] | None = None,
    statuses: tuple[int, ...] = (),
    problems: tuple[int, ...] = (),
) -> Callable[[V], V]:
    """Declare an endpoint: authenticated, rate-limited, scope-checked, bodies validated."""

    def decorate(view: V) -> V:
        spec = Operation(
            rule,
            method,
            view.__name__,
            summary,
            tag,
            scope,
            status,
            answer,
            body,
            body_schema,
            query,
            statuses,
            problems,
        )
        OPERATIONS.append(spec)

        @wraps(view)
        def handler(**path: Any) -> Response:
            try:
                token = _authenticate(scope)
                g.api_token = token
                arguments = dict(path)
                if query is not None:
                    arguments["query"] = parse_query(query)
                if body is not None:
                    arguments["body"] = parse_body(body)
                result = view(**arguments)
                db().commit()
            except ApiProblem as problem:
                db().rollback()
                return problem_response(problem)
            except EditionInvalid as exc:
                db().rollback()
                return problem_response(ApiProblem("validation", errors=list(exc.problems)))
            except (EditionLocked, SendError, IllegalTransition) as exc:
                db().rollback()
                return problem_response(ApiProblem("conflict", str(exc)))
            except UnknownNewsletter as exc:
                db().rollback()
                return problem_response(ApiProblem("not-found", str(exc)))
            except (InvalidAddress, UnusableText, EditionError, InvalidTag) as exc:
                db().rollback()
                return problem_response(ApiProblem("validation", str(exc)))
            return _answer(result, status)

        blueprint.add_url_rule(rule, endpoint=view.__name__, view_func=handler, methods=[method])
        return view

    return decorate


def _answer(result: Any, status: int) -> Response:
    if isinstance(result, tuple):
        result, status = result
    if isinstance(result, Response):
        response = result
    else:
        payload = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
        response = Response(
            json.dumps(payload, ensure_ascii=False), status, mimetype="application/json"
        )
    _rate_headers(response)
    return response


# --- tokens, scopes and the rate limit --------------------------------------------------


def current_token() -> ApiToken:
    """The token of this request (set by the operation wrapper)."""
    token: ApiToken = g.api_token
    return token


def actor() -> Who:
    """Who the audit log names for this request: api:<token name>, from its network."""
    return tokens.who(current_token(), client_network(request.remote_addr or ""))


def _authenticate(scope: Scope | None) -> ApiToken:
    header = request.headers.get("Authorization", "")
    kind, _, presented = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="hebdo"'}
    if kind.lower() != "bearer" or not presented.strip():
        raise ApiProblem("unauthorized", "send Authorization: Bearer <token>", headers=challenge)
    if "\x00" in presented or len(presented) > 200:
        raise ApiProblem("unauthorized", "unknown or revoked token", headers=challenge)
    session = db()
    token = tokens.authenticate(session, presented)
    if token is None:
        session.rollback()
        raise ApiProblem("unauthorized", "unknown or revoked token", headers=challenge)
    limit = settings().api_rate_per_minute
    used = ratelimit.count_hit(session, f"api:token:{token.id}", RATE_WINDOW)
    session.commit()  # the count and the last use stand whatever the request does next
    g.api_rate = (limit, max(limit - used, 0), _reset())
    if used > limit:
        raise ApiProblem(
            "rate-limited",
            f"at most {limit} requests a minute per token",
            headers={"Retry-After": str(_reset())},
        )
    if scope is not None and not tokens.allows(token, scope):
        raise ApiProblem("forbidden", f"this token lacks the {scope.value!r} scope")
    return token


def _reset() -> int:
    import time

    now = time.time()
    return max(1, math.ceil(ratelimit.window_start(RATE_WINDOW, now) + RATE_WINDOW - now))


def _rate_headers(response: Response) -> None:
    # draft-ietf-httpapi-ratelimit-headers: the policy, then what is left and when it resets.
    rate = g.get("api_rate")
    if rate is None:
        return
    limit, remaining, reset = rate
    response.headers["RateLimit-Policy"] = f'"per-token";q={limit};w={RATE_WINDOW}'
    response.headers["RateLimit"] = f'"per-token";r={remaining};t={reset}'


def check_newsletter(newsletter_id: int) -> None:
    """403 unless the token may act on this newsletter."""
    if not tokens.sees(current_token(), newsletter_id):
        raise ApiProblem("forbidden", "this token is limited to another newsletter")
