"""schemathesis against the LIVE API: a real werkzeug server on loopback (SQLite), the
OpenAPI document it serves, and every operation called with a token of each scope.

No answer may be a 5xx; every answer to a valid request must match the document (status,
content type, body schema), and invalid requests (schemathesis' negative mode) must be
refused with a 4xx. Examples are bounded so the whole run stays well under two minutes; the
seeded newsletter slug and ids are swapped in for three generated values in four, so the
fuzz reaches the domain rather than stopping at 404.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import BaseWSGIServer, make_server

from service.access import tokens
from service.app import create_app
from service.config import Settings
from service.team.audit import Who
from tests import factories

# Per operation: valid requests must get answers the document describes; invalid ones
# (wrong types, missing fields, broken headers) may get any 4xx, but never a 5xx.
# Each example is sent with four tokens.
MODES: list[tuple[GenerationMode, int, list[Any]]] = [
    (
        GenerationMode.POSITIVE,
        12,
        [not_a_server_error, status_code_conformance, content_type_conformance,
         response_schema_conformance],
    ),
    (GenerationMode.NEGATIVE, 6, [not_a_server_error]),
]  # fmt: skip


@pytest.fixture
def live_api(
    env: dict[str, str], sessions: sessionmaker[Session]
) -> Iterator[tuple[str, dict[str, str], dict[str, list[int]]]]:
    """A served app and a token per scope (and one with every scope)."""
    config = Settings.from_env({**env, "HEBDO_API_RATE_PER_MINUTE": "1000000"}, testing=True)
    with sessions() as session, session.begin():
        letter = factories.newsletter(session, "lettre")
        people = factories.readers(session, letter, 3)
        editions = [factories.edition(session, letter).id for _ in range(3)]
        seeds = {"edition_id": editions, "subscriber_id": [p.id for p in people]}
        minted = {
            name: tokens.create(session, f"fuzz-{name}", scopes, actor=Who.cli()).secret
            for name, scopes in {
                "read": [tokens.Scope.READ],
                "write": [tokens.Scope.WRITE],
                "send": [tokens.Scope.SEND],
                "all": list(tokens.Scope),
            }.items()
        }
    server: BaseWSGIServer = make_server("127.0.0.1", 0, create_app(config), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", minted, seeds
    finally:
        server.shutdown()
        thread.join(timeout=10)


def _seeded(case: Any, use_seed: int, seeds: dict[str, list[int]]) -> Any:
    if use_seed:
        for name, values in seeds.items():
            if case.path_parameters and name in case.path_parameters:
                case.path_parameters[name] = values[use_seed % len(values)]
        if case.path_parameters and "slug" in case.path_parameters:
            case.path_parameters["slug"] = "lettre"
        if isinstance(case.body, dict) and "newsletter" in case.body:
            case.body["newsletter"] = "lettre"
        if case.query and "newsletter" in case.query:
            case.query["newsletter"] = "lettre"
    return case


@pytest.mark.slow
def test_every_operation_answers_within_its_schema_and_never_5xx(
    live_api: tuple[str, dict[str, str], dict[str, list[int]]],
) -> None:
    base, minted, seeds = live_api
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")
    started = time.monotonic()
    failures: list[str] = []
    statuses: dict[int, int] = {}
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document itself must be valid
        operations.append(result.ok())
    assert len(operations) >= 25

    for operation, (mode, examples, checks) in itertools.product(operations, MODES):
        strategy = st.tuples(operation.as_strategy(generation_mode=mode), st.integers(0, 3))

        @given(pair=strategy)
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(pair: tuple[Any, int]) -> None:
            case = _seeded(*pair, seeds)
            for scope, secret in minted.items():
                response = case.call(
                    base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=30
                )
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                try:
                    case.validate_response(response, checks=checks)  # noqa: B023 - run at once
                except Exception as exc:
                    failures.append(
                        f"{case.operation.label} [{scope}, {mode.value}]: {str(exc)[:600]}"  # noqa: B023
                    )
                    raise

        try:
            run()
        except Exception as exc:
            # A failed check is recorded above; anything else is a failure of its own.
            if not any(operation.label in failure for failure in failures):
                failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:600]}")
    elapsed = time.monotonic() - started
    print(f"fuzz: {sum(statuses.values())} calls in {elapsed:.0f} s, by status {statuses}")
    assert not failures, "\n\n".join(failures)
    assert elapsed < 170, f"the fuzz took {elapsed:.0f} s"
