"""Events reach the ingestion service as plain dicts (app/plain_inputs.py): whichever way
a client sends an event (a long or a short list variable, an inline literal, trackEvent),
it is stored the same; and the mechanism refuses the schemas it cannot serve exactly."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import strawberry
from strawberry.permission import BasePermission

from app.database import connection
from app.fast_variables import MIN_ITEMS
from app.plain_inputs import as_plain_dicts, resolved_as_coerced
from tests.support.graphql import gql
from tests.support.tracking import CHROME_WINDOWS, TRACK_EVENT, TRACK_EVENTS

COLUMNS = """type, profile_id, occurred_at, session_id, visitor_id, user_id, engagement_ms, properties,
             browser, os, device_type, url, referrer_domain, utm_source, utm_medium, utm_campaign, ip, dnt"""


def event(i: int, tag: str, profile_id: str) -> dict[str, Any]:
    return {
        "type": "profile.viewed", "eventId": f"{tag}-{i}", "profileId": profile_id,
        "occurredAt": f"2026-11-20T10:{i:02d}:00+01:00", "userId": f"u-{i}", "sessionId": f"s-{i}",
        "engagementMs": 1000 + i, "properties": {"plan": "pro", "n": [i]},
        "context": {"ip": "198.51.100.23", "userAgent": CHROME_WINDOWS, "utmCampaign": "override",
                    "url": "https://shop.example/p?utm_source=newsletter&utm_medium=email", "referrer": "https://www.google.com/"},
    }  # fmt: skip


def literal(value: Any) -> str:
    """A GraphQL input literal of a JSON-like value (for the inline-argument path)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return json.dumps(value)


async def rows_of(tenant: Any, tag: str) -> list[dict[str, Any]]:
    async with connection() as conn:
        rows = await conn.fetch(
            f"SELECT {COLUMNS} FROM events WHERE organization_id = $1 AND event_id LIKE $2 ORDER BY occurred_at",
            uuid.UUID(tenant.org_id), f"{tag}-%",
        )  # fmt: skip
    return [dict(r) for r in rows]


async def test_an_event_is_stored_the_same_however_it_is_sent(client, tenant):
    count = MIN_ITEMS + 2  # long enough for the compiled coercer

    async def send_list(tag: str, events: list[dict[str, Any]]) -> None:
        body = await gql(client, TRACK_EVENTS, {"events": events}, token=tenant.ingestion_key)
        assert body["data"]["trackEvents"]["accepted"] == len(events), body

    await send_list("long", [event(i, "long", tenant.profile_id) for i in range(count)])
    for i in range(count):
        await send_list("short", [event(i, "short", tenant.profile_id)])
        body = await gql(client, TRACK_EVENT, {"event": event(i, "one", tenant.profile_id)}, token=tenant.ingestion_key)
        assert body["data"]["trackEvent"]["accepted"] == 1, body
    inline = literal([event(i, "inline", tenant.profile_id) for i in range(count)])
    body = await gql(client, f"mutation {{ trackEvents(events: {inline}) {{ accepted }} }}", token=tenant.ingestion_key)
    assert body["data"]["trackEvents"]["accepted"] == count, body

    long = await rows_of(tenant, "long")
    assert len(long) == count
    assert long[0]["engagement_ms"] == 1000 and long[0]["properties"] and long[0]["utm_campaign"] == "override"
    assert (long[0]["browser"], long[0]["utm_source"], long[0]["referrer_domain"]) == ("Chrome", "newsletter", "google.com")
    for tag in ("short", "one", "inline"):
        assert await rows_of(tenant, tag) == long, tag


async def test_a_wrong_item_in_a_long_list_is_named_by_graphql(client, tenant):
    events = [event(i, "bad", tenant.profile_id) for i in range(MIN_ITEMS + 2)]
    events[3]["context"]["port"] = 80
    body = await gql(client, TRACK_EVENTS, {"events": events}, token=tenant.ingestion_key)
    assert body["data"] is None
    message = body["errors"][0]["message"]
    assert "$events' has invalid value at [3].context" in message and "unknown field 'port'" in message, message


# --------------------------------------------------------------------------- the mechanism


@strawberry.input
class Inner:
    some_value: int | None = None


@strawberry.input
class Item:
    item_name: str
    inner: Inner | None = None


def schema_with(resolver: Any, **field: Any) -> strawberry.Schema:
    @strawberry.type
    class Query:
        ok: bool = True

    @strawberry.type
    class Mutation:
        take: str = strawberry.field(resolver=resolver, **field)

    return strawberry.Schema(query=Query, mutation=Mutation)


def take(items: list[Item], info: strawberry.Info) -> str:
    assert info.field_name == "take"
    return repr(items)


def test_plain_dict_inputs_reach_the_resolver_with_python_names_and_every_key():
    schema = schema_with(take)
    as_plain_dicts(schema, Item, Inner)
    resolved_as_coerced(schema, "Mutation", "take")

    result = schema.execute_sync(
        'mutation($i: [Item!]!) { take(items: $i) }', {"i": [{"itemName": "a", "inner": {"someValue": 2}}, {"itemName": "b"}]}
    )
    assert result.errors is None
    assert result.data == {"take": repr([{"item_name": "a", "inner": {"some_value": 2}}, {"item_name": "b", "inner": None}])}


@strawberry.input
class Loose:
    maybe: int | None


def loose(items: list[Loose]) -> str:
    return ""


def test_an_optional_field_without_a_default_is_refused():
    with pytest.raises(TypeError, match=r"Loose.maybe"):
        as_plain_dicts(schema_with(loose), Loose)


def test_a_field_with_permissions_keeps_strawberrys_path():
    class Nobody(BasePermission):
        message = "no"

        def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
            return False

    schema = schema_with(take, permission_classes=[Nobody])
    as_plain_dicts(schema, Item, Inner)
    with pytest.raises(TypeError, match="permission classes"):
        resolved_as_coerced(schema, "Mutation", "take")


def test_an_argument_of_an_ordinary_input_type_is_refused():
    schema = schema_with(take)  # Item was not made a plain-dict input
    with pytest.raises(TypeError, match=r"take\(items:\)"):
        resolved_as_coerced(schema, "Mutation", "take")
