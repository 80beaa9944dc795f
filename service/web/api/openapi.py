"""The OpenAPI 3.1 document of /api/v1, built from the operation table and pydantic models,
and the browsable page (Swagger UI from the pinned tools/apidocs package, served here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flask import Response, abort, jsonify, render_template, send_from_directory, url_for
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.config import PROJECT_ROOT
from service.numbers import DB_INT_MAX
from service.web.api.core import BODY_LIMIT, OPERATIONS, PROBLEM_TYPE, Problem, blueprint

SWAGGER_UI = PROJECT_ROOT / "tools" / "apidocs" / "node_modules" / "swagger-ui-dist"
_SWAGGER_FILES = ("swagger-ui.css", "swagger-ui-bundle.js")
_OWN_FILES = {"docs.js": "text/javascript", "docs.css": "text/css"}
_ARGUMENT = re.compile(r"<(?:(\w+):)?(\w+)>")
_REF = "#/components/schemas/{model}"
_PROBLEM_TEXT = {
    400: "Malformed JSON or request",
    401: "No token, or an unknown or revoked one",
    403: "The token lacks the scope, or is limited to another newsletter",
    404: "Not found",
    409: "The object's state does not allow this",
    413: f"The body is over {BODY_LIMIT} bytes",
    415: "The body is not JSON",
    422: "A field breaks the rules; `errors` names each",
    429: "Over the token's rate limit; see Retry-After",
}


def _path_parameter(kind: str | None, name: str) -> dict[str, Any]:
    if kind == "int":
        schema: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": DB_INT_MAX}
    else:
        schema = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,79}$"}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    branches = schema.get("anyOf")
    if branches:
        kept = [branch for branch in branches if branch.get("type") != "null"]
        if len(kept) == 1:
            rest = {key: value for key, value in schema.items() if key != "anyOf"}
            return {**rest, **kept[0]}
    return schema


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = _without_null(prop)
        prop.pop("default", None) if prop.get("default") is None else None
        prop.pop("title", None)
        out.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    return out


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every declared operation."""
    inputs = {op.body for op in OPERATIONS if op.body is not None}
    outputs = {op.answer for op in OPERATIONS if op.answer is not None} | {Problem}
    pairs: list[tuple[type[BaseModel], Any]] = [(model, "validation") for model in inputs]
    pairs += [(model, "serialization") for model in outputs]
    keys, definitions = models_json_schema(pairs, ref_template=_REF)
    schemas: dict[str, Any] = dict(definitions.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        path = _ARGUMENT.sub(lambda m: "{" + m.group(2) + "}", op.rule)
        parameters = [_path_parameter(kind, name) for kind, name in _ARGUMENT.findall(op.rule)]
        if op.query is not None:
            parameters += _query_parameters(op.query)
        responses: dict[str, Any] = {}
        for status in (op.status, *op.statuses):
            if op.answer is None:
                responses[str(status)] = {"description": "Done"}
            else:
                ref = keys[(op.answer, "serialization")]
                responses[str(status)] = {
                    "description": "OK",
                    "content": {"application/json": {"schema": ref}},
                }
        problems = {400, 401, 403, 429, *op.problems}
        if op.body is not None or op.body_schema is not None:
            problems |= {413, 415, 422}
        if op.query is not None:
            problems.add(422)
        for status in sorted(problems):
            responses[str(status)] = {
                "description": _PROBLEM_TEXT[status],
                "content": {PROBLEM_TYPE: {"schema": keys[(Problem, "serialization")]}},
            }
        entry: dict[str, Any] = {
            "operationId": op.name,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": parameters,
            "responses": responses,
        }
        if op.scope is not None:
            entry["description"] = f"Needs a token with the `{op.scope.value}` scope."
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": keys[(op.body, "validation")]}},
            }
        elif op.body_schema is not None:
            body = dict(op.body_schema)
            schemas.update(body.pop("$defs", {}))
            schemas[body.get("title", "Document")] = body
            entry["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model=body["title"])}}
                },
            }
        paths.setdefault(blueprint.url_prefix + path, {})[op.method.lower()] = entry  # type: ignore[operator]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Hebdo API",
            "version": "1",
            "description": "Newsletters, subscribers, editions and their sending. "
            "Errors are RFC 9457 problem details; every call needs "
            "`Authorization: Bearer hebdo_<id>_<secret>` (`hebdo tokens create`).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


@blueprint.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI document (public: it holds no data)."""
    return jsonify(document())


@blueprint.get("/docs")
def docs() -> str:
    """The browsable API page (Swagger UI), or how to install it."""
    ready = all((SWAGGER_UI / name).is_file() for name in _SWAGGER_FILES)
    return render_template("web/api_docs.html", ready=ready, spec=url_for("api.openapi_json"))


@blueprint.get("/docs/swagger-ui.css", defaults={"name": "swagger-ui.css"})
@blueprint.get("/docs/swagger-ui-bundle.js", defaults={"name": "swagger-ui-bundle.js"})
@blueprint.get("/docs/docs.js", defaults={"name": "docs.js"})
@blueprint.get("/docs/docs.css", defaults={"name": "docs.css"})
def docs_asset(name: str) -> Response:
    """Swagger UI's own files, from the pinned package (no CDN), and ours beside them."""
    if name in _OWN_FILES:
        return send_from_directory(Path(__file__).parent, name, mimetype=_OWN_FILES[name])
    if name not in _SWAGGER_FILES:
        abort(404)
    return send_from_directory(SWAGGER_UI, name)
