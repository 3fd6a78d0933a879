"""What resolvers share: the viewer (refused with its reason), profile and range arguments,
and following a live channel (reading its payloads as typed messages)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from enum import Enum
from typing import Annotated, Any, TypeVar

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.types import Info

from app.auth import Access, Viewer, readable_profile
from app.errors import Forbidden, SlowConsumer
from app.eventbus import SubscriberDropped
from app.fanout import current_operation
from app.live_messages import LiveMessage
from app.services import buyer_emails
from app.services.accounts import audit
from app.settings import get_settings
from app.timebuckets import Preset, RangeSpec, TimeRange
from schema.common import ResolvedRange, TimeRangeInput

T = TypeVar("T")
M = TypeVar("M", bound=LiveMessage)
ProfileIdArg = Annotated[strawberry.ID, strawberry.argument(description="The profile.")]
RangeArg = Annotated[
    TimeRangeInput,
    strawberry.argument(
        name="range",
        description="A preset (e.g. LAST_7_DAYS) or a custom from/to; buckets follow the organization's time zone.",
    ),
]


def to_range_spec(value: TimeRangeInput) -> RangeSpec:
    return RangeSpec(
        preset=Preset(value.preset.value) if value.preset is not None else None,
        start=value.from_,
        end=value.to,
    )


def to_resolved_range(value: TimeRange) -> ResolvedRange:
    return ResolvedRange(from_=value.start, to=value.end, timezone=value.timezone)


def optional_id(value: Any) -> strawberry.ID | None:
    """An id field that may be absent (None stays None)."""
    return strawberry.ID(str(value)) if value is not None else None


def viewer_of(info: Info[Any, Any]) -> Viewer:
    """The authenticated viewer, or the authentication error that stopped it; a read-only
    viewer is refused here by any root field whose declared access does not admit it."""
    context = info.context
    if context.auth_error is not None:
        raise context.auth_error
    viewer: Viewer = context.viewer
    access = info._field.metadata.get("access") if info._field.metadata else None
    if access is not None and access.refuses_read_only(viewer):
        raise Forbidden(f"viewers may read reports but not do this ({access.text})")
    return viewer


def app_state(info: Info[Any, Any]) -> Any:
    """Process-wide objects (event bus, enrichment, rate limiter) set up at start."""
    return info.context.request.app.state


def from_bus(message: type[M], mapper: Callable[[M], T]) -> Callable[[Mapping[str, Any]], T]:
    """The subscribing edge: a bus payload read as its typed message, then mapped to its
    GraphQL type by the type's one mapper."""
    read = message.from_json

    def convert(payload: Mapping[str, Any]) -> T:
        return mapper(read(payload))

    return convert


async def follow_profile(
    info: Info[Any, Any],
    profile_id: strawberry.ID,
    channel_of: Callable[[str], str],
    convert: Callable[[Mapping[str, Any]], T],
) -> AsyncGenerator[T, None]:
    """One profile's live channel, converted. Access is checked once, when the subscription
    starts (tokens carry their scope and do not change during a connection)."""
    profile = await readable_profile(viewer_of(info), profile_id)
    async for item in follow_channel(info, channel_of(str(profile.id)), convert):
        yield item


async def follow_channel(
    info: Info[Any, Any], channel: str, convert: Callable[[Mapping[str, Any]], T]
) -> AsyncGenerator[T, None]:
    """A live channel the caller has checked access to, converted. Over a websocket each
    payload goes to the operation's fan-out (app/fanout.py), which sends one result shared
    by every subscriber of the same operation; what it cannot share is yielded and takes
    Strawberry's own path."""
    live = current_operation()
    async with app_state(info).bus.subscribe(channel) as subscription:
        try:
            async for payload in subscription:
                if live is None or not await live.deliver(payload, convert):
                    yield convert(payload)
        except SubscriberDropped as exc:
            raise SlowConsumer(f"{exc}; subscribe again to continue") from exc


SECRET_WORDS = ("secret", "password", "token")


def plain(value: Any) -> Any:
    """A GraphQL input or result as JSON-ready data for the audit log, secrets left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items() if not any(word in str(k).lower() for word in SECRET_WORDS)}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def address_of(info: Info[Any, Any]) -> str | None:
    client = getattr(info.context.request, "client", None)
    return client.host if client else None


def _organization_of(viewer: Viewer, arguments: Mapping[str, Any], result: Any) -> uuid.UUID | None:
    """The organization an admin act concerns: the one its result (or an object in it) belongs
    to, the one it named, or the admin's own."""
    inner = [getattr(result, f.name) for f in dataclasses.fields(result)] if dataclasses.is_dataclass(result) else []
    nested = [getattr(value, "organization_id", None) for value in inner]
    for found in (getattr(result, "organization_id", None), *nested, arguments.get("organization_id")):
        if found is not None:
            try:
                return uuid.UUID(str(found))
            except ValueError:
                return None
    return viewer.organization_id


def _target_of(arguments: Mapping[str, Any], result: Any) -> str | None:
    """What the act was done to: the id it named, else the object it made or returned (a
    deletion returns its id), else the other object it named, else the organization (its
    settings)."""
    named = [v for k, v in arguments.items() if k.endswith("_id") and k != "organization_id" and v is not None]
    for found in (arguments.get("id"), result if isinstance(result, str) else getattr(result, "id", None), *named,
                  arguments.get("organization_id"), getattr(result, "organization_id", None)):  # fmt: skip
        if found is not None:
            return str(found)
    return None


def _reason_of(arguments: Mapping[str, Any]) -> str | None:
    reason = arguments.get("reason")
    return str(reason) if reason is not None else None


class AuditedAdminAct(FieldExtension):
    """Writes an audit entry after an admin mutation succeeds: who, in which role, from
    where, the arguments given, the reason when it takes one, the object it left (`after`)
    and, for objects only admins change, the object before (`before_from_log`: as the log
    last recorded it). Mutations whose service records its own entries (accounts, the
    support desk) are not wrapped."""

    def __init__(self, action: str, *, before_from_log: bool) -> None:
        self.action = action
        self.before_from_log = before_from_log

    async def resolve_async(self, next_: Any, source: Any, info: Info[Any, Any], **kwargs: Any) -> Any:
        result = await next_(source, info, **kwargs)
        viewer = viewer_of(info)
        organization, target = _organization_of(viewer, kwargs, result), _target_of(kwargs, result)
        before = None
        if self.before_from_log:
            before = await audit.last_recorded(organization_id=organization, target=target, action=self.action)
        await audit.record(
            None, action=self.action, actor=audit.Actor.of(viewer, address_of(info)), organization_id=organization,
            target=target, details={"arguments": plain(_personal_data_hashed(kwargs))}, before=before,
            after=_after(self.action, result),
            reason=_reason_of(kwargs),
        )  # fmt: skip
        return result


def _personal_data_hashed(arguments: Mapping[str, Any]) -> Mapping[str, Any]:
    """A buyer email argument is kept in the log as its keyed hash, as everywhere else."""
    email = arguments.get("buyer_email")
    if not isinstance(email, str):
        return arguments
    hashed = buyer_emails.hash_of_query(email, get_settings())
    return {**{k: v for k, v in arguments.items() if k != "buyer_email"}, "buyer_email_hash": hashed}


def _after(action: str, result: Any) -> Any:
    """A deletion leaves nothing: its result is only the deleted object's id."""
    return {"deleted": True} if action.endswith(".deleted") else plain(result)


# Objects whose every change goes through an audited admin mutation: the log's last `after`
# of one is what it was before the next change.
ADMIN_ONLY_OBJECTS = frozenset({"cost", "cohort", "experiment", "fraud_rule", "gov_alert_settings", "money_settings",
                                "organization_settings"})  # fmt: skip


def guarded(
    access: Access, resolver: Callable[..., Any], description: str, *, subscription: bool = False, audited: str | None = None
) -> Any:
    """A root field with its access declared next to it: stated at the end of its description
    (what third parties read in the schema) and kept in its metadata (what tests/test_access.py
    checks every credential against). The service behind the resolver enforces it. An admin
    mutation names its audit action in `audited`, and each success is written to the audit log."""
    make = strawberry.subscription if subscription else strawberry.field
    extensions = []
    if audited is not None:
        creates = audited.endswith(".created")
        extensions.append(AuditedAdminAct(audited, before_from_log=audited.split(".")[0] in ADMIN_ONLY_OBJECTS and not creates))
    metadata = {"access": access, "audited": audited}
    return make(resolver=resolver, description=f"{description} {access.text}", metadata=metadata, extensions=extensions)
