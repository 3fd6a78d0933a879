"""Fixtures for real server processes (registered once by tests/conftest.py).

Each stack is started once per test module that asks for it and stopped when that module is
done: module scope, not session scope, because processes that outlive their module show up
in other modules' server-wide observations (e.g. test_worker counts the LISTEN sessions
named `pulsegraph-worker-listen` on the whole PostgreSQL server).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stacks import RUNNING, Stack, stack_with_database


@pytest.fixture(scope="module")
def split_stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API without worker + a worker process, over Redis (REDIS_URL) or PostgreSQL."""
    with stack_with_database(
        "split", "split", database_url, tmp_path_factory.mktemp("split-stack"), broadcast_url=None, in_process_worker=False
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def memory_stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One process: API with the worker in-process and the memory bus."""
    with stack_with_database(
        "one-process", "one", database_url, tmp_path_factory.mktemp("memory-stack"), broadcast_url="memory://",
        in_process_worker=True,
    ) as stack:  # fmt: skip
        yield stack


@pytest.fixture(scope="module")
def two_process_stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`serve --workers 2`, each API process with its in-process worker, over Redis (REDIS_URL)
    or PostgreSQL: a view may be accepted, processed and pushed by three different processes."""
    with stack_with_database(
        "two-process", "two", database_url, tmp_path_factory.mktemp("two-process-stack"), broadcast_url=None,
        in_process_worker=True, api_processes=2,
    ) as stack:  # fmt: skip
        yield stack


@pytest.fixture
def server_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a failed test (the call report is logged before teardown), print every running
    stack's logs; pytest shows them under "Captured stdout teardown" without -s."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        for stack in RUNNING:
            stack.print_logs(f"after failure of {request.node.nodeid}")
