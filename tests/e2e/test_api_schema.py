"""P7: schemathesis against the management API's own /openapi.json, on a real
`shipyard server` with an admin key: zero server errors and zero responses that break the
documented schema, over a bounded number of generated requests per operation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from serve_support import open_registry
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from test_server import ControlPlane, control_plane, module_database, ok

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 10  # per operation and generation mode: ~1 minute in all
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(
    scope="module",
    params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    root: Path = tmp_path_factory.mktemp("api-schema")
    X, y = make_classification(60, 4, random_state=0)
    X = X.astype(np.float32)
    with module_database(request.param, root) as url:
        # Something to find: generated names mostly miss, but fixed ones hit real rows.
        with open_registry(root / "home", url) as registry:
            registry.register(LogisticRegression().fit(X, y), "fraud", sample_input=X[:5])
        with control_plane(root / "home", url, root / "logs", "--no-controller") as plane:
            assert plane.admin_token is not None
            with plane.client(plane.admin_token) as admin:
                ok(admin.post("/deployments", json={"name": "fraud", "model": "fraud:1"}), 201)
            yield plane


def test_openapi_fuzzing_finds_no_server_error_or_schema_violation(server: ControlPlane) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    assert len(operations) >= 20
    headers = {"authorization": f"Bearer {server.admin_token}"}
    failures: list[str] = []
    cases = [
        (operation, mode) for operation in operations for mode in GenerationMode
    ]  # valid data, and data that breaks the schema on purpose (it must get a 4xx, not a 5xx)
    for operation, mode in cases:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS, timeout=30)

        try:
            run()
        except Unsatisfiable:
            # Negative mode on an operation without parameters or body: nothing to break.
            assert mode is GenerationMode.NEGATIVE, operation.label
        except (Exception, BaseExceptionGroup) as exc:  # one report for every failing operation
            failures.append(f"{operation.label} ({mode.value}): {exc!r}")
    assert not failures, "\n\n".join(failures) + "\n\n" + server.logs()[-3000:]
    # The server is still healthy and the admin key still works after all of that.
    with server.client(server.admin_token) as admin:
        assert ok(admin.get("/deployments/fraud"))["revision"]["number"] >= 1
