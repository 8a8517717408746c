"""Schemathesis against the served OpenAPI schema: generated requests never get a 500.

Every operation is fuzzed from /openapi.json (bounded by `max_examples`), writes with the valid
token, and every answer must also match the schema it was declared with.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from facerep.service import ServiceSettings, create_app
from tests.service.conftest import AUTH, TOKEN

# Per operation: 9 operations, a few ms a request (random bytes are rarely a photo): ~10 s.
MAX_EXAMPLES = 100


def load_schema() -> schemathesis.schemas.BaseSchema:
    """The schema as served at /openapi.json by a running app (its lifespan starts here).

    At collection: schemathesis 4.32's lazy `from_fixture` fails under pytest 9 (`_nodeid`).
    """
    root = Path(tempfile.mkdtemp(prefix="facerep-schemathesis-"))
    # Registered first, so it runs after schemathesis's own exit hook has stopped the app.
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    app = create_app(
        ServiceSettings(gallery_dir=root / "galleries", token=TOKEN, max_upload_bytes=100_000)
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACEREP_HOME", str(root / "home"))  # no stored calibration leaks in
        return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = load_schema()


@pytest.fixture(scope="module", autouse=True)
def stop_the_app() -> Iterator[None]:
    """Stop the app's lifespan once this module's tests are done."""
    from schemathesis.python.asgi import shutdown_lifespans

    yield
    shutdown_lifespans()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_generated_request_gets_a_server_error(case) -> None:
    case.call_and_validate(
        headers=AUTH,
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
    )


def test_the_schema_covers_every_operation() -> None:
    operations = {
        (result.ok().method.upper(), result.ok().path) for result in schema.get_all_operations()
    }
    assert len(operations) == 9
    assert ("DELETE", "/v1/galleries/{name}/faces/{face_id}") in operations
    assert ("POST", "/v1/occlusion") in operations
