"""Operations written from the schema itself: every root field with a selection of every field
it returns, its ID arguments named, and valid samples for the rest. Tests built on them cover
a new field without being touched, and name the field when they cannot.
"""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    Undefined,
)

from schema import build_schema

ROOT_KINDS = ("query", "mutation", "subscription")
MAX_DEPTH = 4  # nested objects selected below a root field (the deepest report needs 3)

# What an ID argument names, by its name; a bare `id` names the object its field is about
# (`updateCost(id)`: a cost), found by the kinds below in the field's name.
ID_NAMES = {"profileId": "profile", "partnerProfileId": "profile", "organizationId": "organization", "costId": "cost",
            "cohortId": "cohort", "userId": "member", "before": "audit entry", "experimentId": "experiment",
            "channelId": "notification channel"}  # fmt: skip
OBJECT_KINDS = {"fraudrule": "fraud rule", "fraudalert": "fraud alert", "cost": "cost", "cohort": "cohort", "person": "person",
                "invitation": "invitation", "servicetoken": "service token", "ingestionkey": "ingestion key",
                "personalapikey": "personal key", "experiment": "experiment", "notificationchannel": "notification channel",
                "channelsecret": "notification channel", "testnotification": "notification channel", "delivery": "delivery",
                "organizationnote": "organization note"}  # fmt: skip

# Valid values for arguments that are not ids, by name, else by type: a mutation refused
# for a bad sample would prove nothing about tenancy.
SAMPLES: dict[str, Any] = {
    "type": "profile.viewed", "currency": "EUR", "reportingCurrency": "EUR", "rate": "1.1", "threshold": 0.75,
    "params": {"threshold": 3, "windowMinutes": 60}, "name": "tenancy rule", "description": "tenancy cost",
    "note": "tenancy note", "reason": "tenancy check", "amountMinor": 1200, "engagementMs": 1000,
    "ipRetentionDays": 1, "eventRetentionDays": 40, "duoSplitPercent": 50, "ip": "6.1.2.3",
    "userId": "tenancy-subject", "anonymousId": "tenancy-device", "serviceId": "victim-engraving",
    "steps": [{"event": "profile.viewed"}, {"event": "profile.inquiry"}],
    "definition": {"kind": "STATIC", "personIds": ["u:tenancy-subject"]},
    "experimentKey": "tenancy-experiment", "personId": "u:tenancy-subject",
    "variants": [{"key": "control", "name": "Control"}, {"key": "treatment", "name": "Treatment"}],
    "query": "victim-order-2", "body": "tenancy note", "ticketId": "victim-ticket-7", "transactionId": "victim-order-2",
    "email": "tenancy-invitee@example.test", "password": "tenancy check password", "newPassword": "tenancy new password",
    "url": "https://93.184.215.14/tenancy-hook", "kinds": ["test"],  # a webhook channel: a public address, a known kind
    "invoiceId": "INV-VICTIM-1", "buyerEmail": "victim-buyer@victim.example",  # the victim's invoice and buyer
}  # fmt: skip
TYPE_SAMPLES: dict[str, Any] = {
    "TimeRangeInput": {"preset": "LAST_30_DAYS"}, "GrowthRangeInput": {"preset": "LAST_30_DAYS"},
    "Granularity": "DAY", "ExportFormat": "CSV", "Int": 1, "Float": 0.75,
    "EventMatcherInput": {"event": "profile.viewed"},  # an insight's events: ones the victim has
    "Boolean": False, "String": "x",
    # insights over the victim's events (an input's `event` is not trackEvent's `event` argument); a trend
    # of an amount only the victim has (its booking's platform fee): its counts of views, small numbers,
    # could be other tenants' numbers in the platform-wide answers the tenancy tests compare with
    "TrendSeriesInput": {"event": "booking.completed", "math": "SUM", "property": "platformFeeMinor"},
    # the experiment calculators: sums the caller gives (control first)
    "ExperimentAnalysisInput": {"variants": [{"key": "control", "n": 100, "sum": 10, "sumSquares": 10},
                                             {"key": "treatment", "n": 100, "sum": 14, "sumSquares": 14}],
                                "metricType": "BINOMIAL"},
    "SampleSizeInput": {"baselineRate": 0.1, "minimumDetectableEffect": 0.2},
    "ExperimentStatus": "STOPPED",
    "HealthWindow": "HOUR",
}  # fmt: skip


@functools.cache
def graphql_schema() -> GraphQLSchema:
    return build_schema()._schema


def enum_values() -> set[str]:
    """Every value of every enum of the schema: words any tenant's answer may hold."""
    return {value for gtype in graphql_schema().type_map.values() if isinstance(gtype, GraphQLEnumType) for value in gtype.values}


def root_fields(kind: str) -> dict[str, GraphQLField]:
    schema = graphql_schema()
    root = {"query": schema.query_type, "mutation": schema.mutation_type, "subscription": schema.subscription_type}[kind]
    return dict(root.fields) if root else {}


def unwrap(gtype: Any) -> Any:
    while isinstance(gtype, GraphQLNonNull | GraphQLList):
        gtype = gtype.of_type
    return gtype


def selection(gtype: Any, depth: int = 0, seen: frozenset[str] = frozenset()) -> str:
    """Every field a client may select without arguments, nested objects down to MAX_DEPTH
    (a type is not entered again inside itself)."""
    gtype = unwrap(gtype)
    if not isinstance(gtype, GraphQLObjectType):
        return ""
    parts = []
    for name, field in gtype.fields.items():
        if any(is_required(arg) for arg in field.args.values()):
            continue
        inner = unwrap(field.type)
        if not isinstance(inner, GraphQLObjectType):
            parts.append(name)
        elif depth < MAX_DEPTH and inner.name not in seen:
            parts.append(f"{name} {{ {selection(inner, depth + 1, seen | {gtype.name})} }}")
    return " ".join(parts)


def is_required(arg: Any) -> bool:
    """A non-null argument or input field without a default: a client must send it."""
    return isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined


def id_paths(gtype: Any, name: str, depth: int = 0) -> list[str]:
    """The ID-typed leaves of an argument: `name`, or `name.field` inside input objects."""
    inner = unwrap(gtype)
    if isinstance(inner, GraphQLScalarType):
        return [name] if inner.name == "ID" else []
    if isinstance(inner, GraphQLInputObjectType) and depth < 3:
        return [f"{name}.{path}" for field_name, field in inner.fields.items() for path in id_paths(field.type, field_name, depth + 1)]
    return []


def field_id_paths(field: GraphQLField) -> list[str]:
    return [path for arg_name, arg in field.args.items() for path in id_paths(arg.type, arg_name)]


def object_kind(field_name: str, path: str) -> str | None:
    """Which kind of object an ID argument names (None: nobody told this module)."""
    leaf = path.rsplit(".", 1)[-1]
    if leaf in ID_NAMES:
        return ID_NAMES[leaf]
    if leaf == "id":
        lowered = field_name.lower()
        return next((kind for key, kind in OBJECT_KINDS.items() if key in lowered), None)
    return None


# The objects one tenant owns, by kind: {"organization": id, "profile": id, "cost": id, ...}.
Side = dict[str, str]


@dataclass(frozen=True)
class Operation:
    document: str
    variables: dict[str, Any]


def id_arguments(field: GraphQLField) -> list[str]:
    """The arguments that are, or contain, IDs."""
    return [arg_name for arg_name, arg in field.args.items() if id_paths(arg.type, arg_name)]


def operation(kind: str, name: str, field: GraphQLField, sides: dict[str, Side | None]) -> Operation:
    """The root field with each id argument naming the objects of the side given for it
    (None: the argument is left out), every other required or sampled argument given a
    valid value, and a full selection."""
    declared, passed, variables = [], [], {}
    for arg_name, arg in field.args.items():
        is_id = bool(id_paths(arg.type, arg_name))
        if (is_id and sides.get(arg_name) is None) or not (is_id or is_required(arg) or arg_name in SAMPLES):
            continue
        declared.append(f"${arg_name}: {arg.type}")
        passed.append(f"{arg_name}: ${arg_name}")
        variables[arg_name] = sample(arg.type, arg_name, name, sides.get(arg_name) or {})
    fields = selection(field.type)
    call = f"{name}({', '.join(passed)})" if passed else name
    body = call + (f" {{ {fields} }}" if fields else "")
    head = f"{kind}({', '.join(declared)})" if declared else kind
    return Operation(f"{head} {{ {body} }}", variables)


def sample(gtype: Any, name: str, field_name: str, side: Side) -> Any:
    """A valid value of an argument (or input field) `name` of root field `field_name`; its
    IDs name the objects of `side`."""
    nullable = gtype.of_type if isinstance(gtype, GraphQLNonNull) else gtype
    if isinstance(nullable, GraphQLList) and isinstance(SAMPLES.get(name), list):
        return SAMPLES[name]  # a list that needs several items (a funnel's steps)
    if isinstance(nullable, GraphQLList):
        return [sample(nullable.of_type, name, field_name, side)]
    if nullable.name == "ID":
        kind = object_kind(field_name, name)
        assert kind in side, f"{field_name}: which object does its ID {name!r} name? (see ID_NAMES, OBJECT_KINDS)"
        return side[kind]
    if isinstance(nullable, GraphQLEnumType):
        values = list(nullable.values)
        preferred = (SAMPLES.get(name), TYPE_SAMPLES.get(nullable.name), "PROFILE_VIEWED")
        return next((v for v in preferred if v in values), values[0])
    if name in SAMPLES and not (isinstance(nullable, GraphQLInputObjectType) and isinstance(SAMPLES[name], str)):
        return SAMPLES[name]  # a text sample never stands for an input object of the same name (retention's query)
    if name == "eventId":
        return f"tenancy-{uuid.uuid4()}"
    if nullable.name in TYPE_SAMPLES:
        return TYPE_SAMPLES[nullable.name]
    if isinstance(nullable, GraphQLInputObjectType):
        return {
            inner: sample(spec.type, inner, field_name, side)
            for inner, spec in nullable.fields.items()
            if id_paths(spec.type, inner) or inner in SAMPLES or is_required(spec)
        }
    if nullable.name == "Date":
        return date.today().isoformat()
    if nullable.name == "DateTime":
        return datetime.now(UTC).isoformat()
    return "x"


def id_variants(field: GraphQLField, own: Side, foreign: Side) -> Iterator[tuple[str, dict[str, Side | None]]]:
    """Every mix over the field's id arguments of own objects, foreign objects and, for an
    optional argument, none: (label, side per argument, None meaning left out)."""
    names = id_arguments(field)
    choices = [{"own": own, "foreign": foreign} | ({} if is_required(field.args[n]) else {"left out": None}) for n in names]
    for picked in itertools.product(*(list(c) for c in choices)):
        label = ", ".join(f"{n}={p}" for n, p in zip(names, picked, strict=True)) or "no ids"
        yield label, {n: c[p] for n, c, p in zip(names, choices, picked, strict=True)}
