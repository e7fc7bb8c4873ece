"""Property-based fuzz of the service against its own OpenAPI schema (schemathesis).

Every operation gets generated requests (valid and invalid) with an admin key; the checks
allow no server error and no response the schema does not document (status, content type,
body). Bounded: a few hundred cases, well under a minute. It cannot lock itself out: the
failed-auth throttle is off for this app, and revoking the key it runs with is skipped.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import ServiceConfig, create_app
from gunmatch.settings import get_settings

EXAMPLES_PER_OPERATION = 16
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
RUN: dict = {"cases": 0, "statuses": Counter()}


@pytest.fixture(scope="module")
def fuzz_schema(gallery_copy: Path, keys: dict[str, str]):
    """The live schema of a real app (real model, small limits, throttle off)."""
    cfg = get_settings(
        threads=1, max_upload_bytes=2_000_000, max_pixels=4_000_000, max_batch_images=4,
        queue_size=2, default_k=5, auth_fail_limit=0,
    )  # fmt: skip
    app = create_app(ServiceConfig(gallery_dir=gallery_copy, settings=cfg))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # A reload opens a new model (seconds each): left to its own tests, not to the fuzzer.
    yield schema.exclude(path="/v1/admin/reload")
    shutdown_lifespans()


def _fuzz(operation, mode: GenerationMode, admin_key: str) -> None:
    """Hypothesis over one operation's generated requests; the checks run on every answer."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION // 2,
        deadline=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case) -> None:
        own_key = (case.path_parameters or {}).get("name") == "admin key"
        if case.method == "DELETE" and case.path == "/v1/keys/{name}" and own_key:
            return  # its own key: the run must not lock itself out
        response = case.call_and_validate(headers={"X-API-Key": admin_key}, checks=CHECKS)
        RUN["cases"] += 1
        RUN["statuses"][response.status_code] += 1

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise  # (an operation without inputs has no invalid request to make)


def test_api_fuzz(fuzz_schema, keys):
    start = time.monotonic()
    operations = [op.ok() for op in fuzz_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, keys["admin"])
    elapsed = time.monotonic() - start
    print(f"fuzz: {RUN['cases']} cases on {len(operations)} operations in {elapsed:.1f} s; "
          f"statuses {dict(sorted(RUN['statuses'].items()))}")  # fmt: skip
    assert RUN["cases"] >= 200  # its time is reported above, not asserted (loaded machines)
    assert not any(code >= 500 and code != 503 for code in RUN["statuses"])
