"""The service tests run on both write paths: PostgreSQL's one statement and the portable ORM statements (what other
databases use), with the rebuild check after each, so both implementations of the one write contract are tested."""

from __future__ import annotations

import pytest

WRITE_PATHS = ("statement", "portable")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test with a worker writes in the worker's process, which runs the session's setting: it runs once.
    if "_write_path" in metafunc.fixturenames and "saga_worker_process" not in metafunc.fixturenames:
        metafunc.parametrize("_write_path", WRITE_PATHS, indirect=True)


@pytest.fixture(autouse=True)
def _write_path(request: pytest.FixtureRequest, settings) -> str:
    """The write path this test runs on (SAGAS["WRITE_PATH"]), set before any other fixture writes a run."""
    path: str = getattr(request, "param", WRITE_PATHS[0])
    if path == "portable":
        settings.SAGAS = {**settings.SAGAS, "WRITE_PATH": "portable"}
    return path
