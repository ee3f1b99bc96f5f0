"""schemathesis against the explorer's OpenAPI schema: generated requests to every endpoint of a trained
vae, cvae and ae run (bounded examples) get answers that match the schema and never a server error."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance  # noqa: E402

from vaelab.web import create_app  # noqa: E402

LOCAL = "http://127.0.0.1"  # the explorer answers loopback Host headers only


def _schema(run: Path):
    app = create_app(run, max_points=50)
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app  # requests go to the ASGI app in-process
    return schema


@pytest.mark.parametrize("kind", ["vae", "cvae", "ae"])
def test_generated_requests_get_no_server_error(digits_runs: dict[str, Path], kind: str) -> None:
    schema = _schema(digits_runs[kind])
    seen: dict[str, int] = {}
    for op in schema.get_all_operations():
        operation = op.ok()
        strategy = operation.as_strategy()

        @settings(max_examples=15, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def check(case) -> None:
            response = case.call(base_url=LOCAL)
            case.validate_response(response, checks=[not_a_server_error, status_code_conformance, response_schema_conformance])
            seen[operation.label] = seen.get(operation.label, 0) + 1

        check()
    assert len(seen) >= 5, seen  # every endpoint was exercised
