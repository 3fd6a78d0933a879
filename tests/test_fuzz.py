"""A schemathesis fuzz run of the whole GraphQL schema: no 5xx, no unmasked internal error.

schemathesis reads the committed `schema.graphql` (the public contract, equal to the served
schema per test_schema.py) and generates operations for every query and mutation: valid
shapes with hostile values (negative limits, huge integers, odd strings, foreign and
malformed ids). Each case is sent in-process to the real app with an organization admin
token, and with no token. Every answer must be JSON with a status below 500, and every
error must carry one of our codes: an INTERNAL_SERVER_ERROR is a bug to fix here.

`FUZZ_EXAMPLES` per operation (30) keeps the run well under a minute; raise it with
PULSEGRAPH_FUZZ_EXAMPLES for a longer run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from graphql import parse_value
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.graphql import nodes  # noqa: E402

FUZZ_EXAMPLES = int(os.environ.get("PULSEGRAPH_FUZZ_EXAMPLES", "30"))
SDL = Path(__file__).resolve().parent.parent / "schema.graphql"
KNOWN_CODES = {
    "BAD_USER_INPUT", "UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "RATE_LIMITED", "UNAVAILABLE",
    "GRAPHQL_VALIDATION_FAILED", "QUERY_TOO_COMPLEX", "QUERY_TIMEOUT",
}  # fmt: skip


# Cases the fuzzer found once, sent on every run. $p is a profile of the tenant.
REGRESSIONS = [
    # A custom range at datetime's lower limit overflowed converting to UTC (was INTERNAL_SERVER_ERROR).
    ("Query.profileOverview", '{ profileOverview(profileId: "$p", range: {from: "0001-01-01T00:00:00+14:00"}) { views } }'),
    # A NUL in a data-subject id reached PostgreSQL, which cannot compare text with NUL.
    ("Query.subjectData", '{ subjectData(userId: "a\\u0000b") { truncated } }'),
    ("Mutation.deleteSubjectData", 'mutation { deleteSubjectData(anonymousId: "\\u0000") { events } }'),
    ("Query.profileTimeseries", '{ profileTimeseries(profileId: "$p", range: {from: "2026-01-01T00:00:00Z", to: "9999-12-31T23:59:59-12:00"}) { views } }'),
]


def _register_scalars(ids: list[str]) -> None:
    """Strategies for our custom scalars, and ids that exist (ours and another tenant's)."""
    schemathesis.graphql.scalar(
        "ID", st.one_of(st.sampled_from(ids), st.text(max_size=40)).map(nodes.String)
    )
    schemathesis.graphql.scalar(
        "DateTime",
        st.one_of(
            st.datetimes().map(lambda d: d.isoformat()),
            st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
            st.sampled_from(["2026-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "yesterday", ""]),
        ).map(nodes.String),
    )
    schemathesis.graphql.scalar(
        "JSON",
        st.sampled_from(['{a: 1}', '{nested: {deep: [1, 2, "x"]}}', '"text"', "[1, 2]", "null", '{a: "\\u0000"}']).map(parse_value),
    )


def _cases(ids: list[str]) -> list[tuple[str, str]]:
    """(operation label, query text) for FUZZ_EXAMPLES generated cases of every operation."""
    _register_scalars(ids)
    schema = schemathesis.graphql.from_file(SDL.read_text())
    cases: list[tuple[str, str]] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @hsettings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(operation.as_strategy())
        def collect(case: Any) -> None:
            cases.append((case.operation.label, case.body))

        collect()
    return cases


async def test_fuzz_the_whole_schema(client, tenant, other_tenant):
    cases = _cases([tenant.profile_id, tenant.org_id, other_tenant.profile_id, other_tenant.org_id])
    labels = {label for label, _ in cases}
    cases += [(label, query.replace("$p", tenant.profile_id)) for label, query in REGRESSIONS]
    assert {"Query.profileOverview", "Mutation.trackEvents", "Query.subjectData"} <= labels, labels
    failures: list[str] = []
    outcomes: dict[str, int] = {}
    sent = 0
    for label, query in cases:
        for token in (tenant.org_admin_token, None):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = await client.post("/graphql", json={"query": query}, headers=headers)
            sent += 1
            if response.status_code >= 500:
                failures.append(f"{label}: HTTP {response.status_code}\n{query}\n{response.text[:500]}")
                continue
            try:
                body = response.json()
            except ValueError:
                failures.append(f"{label}: not JSON (HTTP {response.status_code})\n{query}\n{response.text[:300]}")
                continue
            errors = body.get("errors") or []
            first = (errors[0].get("extensions") or {}).get("code") if errors else "ok"
            outcomes[str(first)] = outcomes.get(str(first), 0) + 1
            for error in errors:
                code = (error.get("extensions") or {}).get("code")
                if code not in KNOWN_CODES:
                    failures.append(f"{label}: {code}: {error.get('message')}\n{query}")
    print(f"fuzz: {len(cases)} generated operations, {sent} requests, {len(failures)} failures; answers: {outcomes}")
    assert not failures, "\n\n".join(failures[:10])
