"""The live messages the worker publishes after commit: one typed class per channel kind.

The event bus carries JSON objects with camelCase keys; these classes are the one place
that knows those shapes. Services build the messages; the worker turns them into JSON at
the publishing edge (`publishable`: `to_json` once per message, sent to each of its
channels somebody follows) and the subscription resolvers read them back at the
subscribing edge (`from_json`). A message names its channels; a subscriber that has
only an id asks the class (`channel_of`).

Plain frozen dataclasses with hand-written converters: the subscribing edge runs once per
event and subscription shape on the fan-out path (app/fanout.py), so it does no more than
the dict reads and timestamp parsing the GraphQL types need. Readers use `get` for the
nullable keys, so a payload without them still converts.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from app.vocabulary import (
    FRAUD_ALERTS_ALL_CHANNEL,
    REVENUE_COUNTERS_ALL_CHANNEL,
    engagement_channel,
    experiment_channel,
    fraud_alert_channel,
    gift_channel,
    gov_alert_channel,
    marketplace_channel,
    revenue_counter_channel,
    view_channel,
)

Payload = dict[str, Any]  # a message as the bus carries it: JSON-ready, camelCase


class LiveMessage(ABC):
    """What every live message offers: where it goes, and its JSON form both ways."""

    __slots__ = ()

    @property
    @abstractmethod
    def channel(self) -> str:
        """The channel of the message's own subject (its profile or organization)."""

    @property
    def channels(self) -> tuple[str, ...]:
        """Every channel the message is sent to."""
        return (self.channel,)

    @abstractmethod
    def to_json(self) -> Payload:
        """The payload as published on the bus."""

    @classmethod
    @abstractmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Self:
        """The message a bus payload carries."""


def publishable(messages: Iterable[LiveMessage], followed: Collection[str]) -> list[tuple[str, Payload]]:
    """The publishing edge: (channel, payload) for each channel of each message that somebody
    follows; a message sent to several channels is encoded once."""
    sent: list[tuple[str, Payload]] = []
    for message in messages:
        channels = [channel for channel in message.channels if channel in followed]
        if channels:
            payload = message.to_json()
            sent += [(channel, payload) for channel in channels]
    return sent


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class GovAlertMessage(LiveMessage):
    """A view flagged as coming from a government network: the alert as stored, listed and
    pushed (on its profile's gov channel, and inside the flagged view)."""

    event_id: str
    organization_id: uuid.UUID
    profile_id: uuid.UUID
    occurred_at: datetime
    raised_at: datetime
    confidence: float
    threshold: float
    network_name: str | None
    asn: int | None
    country: str | None
    city: str | None
    device_type: str | None
    browser: str | None
    os: str | None
    reasons: tuple[str, ...]
    signals: tuple[str, ...]

    @classmethod
    def channel_of(cls, profile_id: str) -> str:
        return gov_alert_channel(profile_id)

    @property
    def channel(self) -> str:
        return gov_alert_channel(str(self.profile_id))

    def to_json(self) -> Payload:
        return {
            "eventId": self.event_id,
            "organizationId": str(self.organization_id),
            "profileId": str(self.profile_id),
            "occurredAt": self.occurred_at.isoformat(),
            "raisedAt": self.raised_at.isoformat(),
            "confidence": self.confidence,
            "threshold": self.threshold,
            "networkName": self.network_name,
            "asn": self.asn,
            "country": self.country,
            "city": self.city,
            "deviceType": self.device_type,
            "browser": self.browser,
            "os": self.os,
            "reasons": list(self.reasons),
            "signals": list(self.signals),
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Self:
        return cls(
            event_id=payload["eventId"],
            organization_id=uuid.UUID(payload["organizationId"]),
            profile_id=uuid.UUID(payload["profileId"]),
            occurred_at=_time(payload["occurredAt"]),
            raised_at=_time(payload["raisedAt"]),
            confidence=float(payload["confidence"]),
            threshold=float(payload["threshold"]),
            network_name=payload.get("networkName"),
            asn=payload.get("asn"),
            country=payload.get("country"),
            city=payload.get("city"),
            device_type=payload.get("deviceType"),
            browser=payload.get("browser"),
            os=payload.get("os"),
            reasons=tuple(payload.get("reasons") or ()),
            signals=tuple(payload.get("signals") or ()),
        )


@dataclass(frozen=True, slots=True)
class ProfileViewMessage(LiveMessage):
    """A processed view of a profile, with its gov alert when it was flagged. The stored
    views a report lists have the same shape."""

    event_id: str
    profile_id: uuid.UUID
    occurred_at: datetime
    country: str | None
    city: str | None
    device_type: str | None
    browser: str | None
    os: str | None
    referrer: str | None
    utm_source: str | None
    is_gov: bool
    gov_alert: GovAlertMessage | None = None

    @classmethod
    def channel_of(cls, profile_id: str) -> str:
        return view_channel(profile_id)

    @property
    def channel(self) -> str:
        return view_channel(str(self.profile_id))

    def to_json(self) -> Payload:
        return {
            "eventId": self.event_id,
            "profileId": str(self.profile_id),
            "occurredAt": self.occurred_at.astimezone(UTC).isoformat(),
            "country": self.country,
            "city": self.city,
            "deviceType": self.device_type,
            "browser": self.browser,
            "os": self.os,
            "referrer": self.referrer,
            "utmSource": self.utm_source,
            "isGov": self.is_gov,
            "govAlert": self.gov_alert.to_json() if self.gov_alert is not None else None,
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Self:
        alert = payload.get("govAlert")
        return cls(
            event_id=payload["eventId"],
            profile_id=uuid.UUID(payload["profileId"]),
            occurred_at=_time(payload["occurredAt"]),
            country=payload.get("country"),
            city=payload.get("city"),
            device_type=payload.get("deviceType"),
            browser=payload.get("browser"),
            os=payload.get("os"),
            referrer=payload.get("referrer"),
            utm_source=payload.get("utmSource"),
            is_gov=bool(payload.get("isGov")),
            gov_alert=GovAlertMessage.from_json(alert) if alert else None,
        )


@dataclass(frozen=True, slots=True)
class EngagementSnapshotMessage(LiveMessage):
    """A profile's running totals for today (its organization's day)."""

    profile_id: uuid.UUID
    since: datetime
    views: int
    unique_visitors: int
    inquiries: int
    conversion_rate: float
    updated_at: datetime
    favorites: int = 0  # net of unfavorites
    shares: int = 0
    clicks: int = 0

    @classmethod
    def channel_of(cls, profile_id: str) -> str:
        return engagement_channel(profile_id)

    @property
    def channel(self) -> str:
        return engagement_channel(str(self.profile_id))

    def to_json(self) -> Payload:
        return {
            "profileId": str(self.profile_id),
            "since": self.since.astimezone(UTC).isoformat(),
            "views": self.views,
            "uniqueVisitors": self.unique_visitors,
            "inquiries": self.inquiries,
            "conversionRate": self.conversion_rate,
            "favorites": self.favorites,
            "shares": self.shares,
            "clicks": self.clicks,
            "updatedAt": self.updated_at.astimezone(UTC).isoformat(),
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Self:
        return cls(
            profile_id=uuid.UUID(payload["profileId"]),
            since=_time(payload["since"]),
            views=int(payload["views"]),
            unique_visitors=int(payload["uniqueVisitors"]),
            inquiries=int(payload["inquiries"]),
            conversion_rate=float(payload["conversionRate"]),
            updated_at=_time(payload["updatedAt"]),
            favorites=int(payload.get("favorites", 0)),
            shares=int(payload.get("shares", 0)),
            clicks=int(payload.get("clicks", 0)),
        )


@dataclass(frozen=True, slots=True)
class FraudAlertMessage(LiveMessage):
    """A fraud alert raised or extended (without its audit trail): sent to its organization's
    channel and to the platform's."""

    id: uuid.UUID
    organization_id: uuid.UUID
    rule_id: uuid.UUID
    rule_name: str
    kind: str
    risk: str
    subject: str
    status: str
    details: dict[str, Any]
    evidence: tuple[str, ...]
    triggered_at: datetime
    last_triggered_at: datetime
    raised_at: datetime
    updated_at: datetime

    @classmethod
    def channel_of(cls, organization_id: str | None) -> str:
        """One organization's channel; None: the platform's, with every organization's alerts."""
        return fraud_alert_channel(organization_id) if organization_id is not None else FRAUD_ALERTS_ALL_CHANNEL

    @property
    def channel(self) -> str:
        return fraud_alert_channel(str(self.organization_id))

    @property
    def channels(self) -> tuple[str, ...]:
        return (self.channel, FRAUD_ALERTS_ALL_CHANNEL)

    def to_json(self) -> Payload:
        return {
            "id": str(self.id),
            "organizationId": str(self.organization_id),
            "ruleId": str(self.rule_id),
            "ruleName": self.rule_name,
            "kind": self.kind,
            "risk": self.risk,
            "subject": self.subject,
            "status": self.status,
            "details": self.details,
            "evidence": list(self.evidence),
            "triggeredAt": self.triggered_at.isoformat(),
            "lastTriggeredAt": self.last_triggered_at.isoformat(),
            "raisedAt": self.raised_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Self:
        return cls(
            id=uuid.UUID(payload["id"]),
            organization_id=uuid.UUID(payload["organizationId"]),
            rule_id=uuid.UUID(payload["ruleId"]),
            rule_name=payload["ruleName"],
            kind=payload["kind"],
            risk=payload["risk"],
            subject=payload["subject"],
            status=payload["status"],
            details=payload["details"],
            evidence=tuple(payload["evidence"]),
            triggered_at=_time(payload["triggeredAt"]),
            last_triggered_at=_time(payload["lastTriggeredAt"]),
            raised_at=_time(payload["raisedAt"]),
            updated_at=_time(payload["updatedAt"]),
        )


@dataclass(frozen=True, slots=True)
class GiftPurchasedMessage(LiveMessage):
    """A gift as the worker recorded it in the ledger, sent to its profile's channel."""

    event_id: str
    organization_id: uuid.UUID
    profile_id: uuid.UUID
    donor_id: str | None
    amount_minor: int
    currency: str
    category: str
    occurred_at: datetime

    @classmethod
    def channel_of(cls, profile_id: str) -> str:
        return gift_channel(profile_id)

    @property
    def channel(self) -> str:
        return gift_channel(str(self.profile_id))

    def to_json(self) -> Payload:
        return {
            "eventId": self.event_id,
            "organizationId": str(self.organization_id),
            "profileId": str(self.profile_id),
            "donorId": self.donor_id,
            "amountMinor": self.amount_minor,
            "currency": self.currency,
            "category": self.category,
            "occurredAt": self.occurred_at.isoformat(),
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Self:
        return cls(
            event_id=payload["eventId"],
            organization_id=uuid.UUID(payload["organizationId"]),
            profile_id=uuid.UUID(payload["profileId"]),
            donor_id=payload.get("donorId"),
            amount_minor=payload["amountMinor"],
            currency=payload["currency"],
            category=payload["category"],
            occurred_at=_time(payload["occurredAt"]),
        )


@dataclass(frozen=True, slots=True)
class RevenueCountersMessage(LiveMessage):
    """Today's running revenue of one organization (its local day) or of the platform (the
    UTC day, `organization_id` None)."""

    organization_id: uuid.UUID | None
    start: datetime
    end: datetime
    revenue: tuple[tuple[int, str], ...]  # (amount_minor, currency), by currency
    transactions: int
    failed_payments: int
    updated_at: datetime

    @classmethod
    def channel_of(cls, organization_id: str | None) -> str:
        """One organization's channel; None: the platform's."""
        return revenue_counter_channel(organization_id) if organization_id is not None else REVENUE_COUNTERS_ALL_CHANNEL

    @property
    def channel(self) -> str:
        return self.channel_of(str(self.organization_id) if self.organization_id else None)

    def to_json(self) -> Payload:
        return {
            "organizationId": str(self.organization_id) if self.organization_id else None,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "revenue": [{"amountMinor": amount, "currency": currency} for amount, currency in self.revenue],
            "transactions": self.transactions,
            "failedPayments": self.failed_payments,
            "updatedAt": self.updated_at.isoformat(),
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Self:
        organization = payload.get("organizationId")
        return cls(
            organization_id=uuid.UUID(organization) if organization else None,
            start=_time(payload["from"]),
            end=_time(payload["to"]),
            revenue=tuple((money["amountMinor"], money["currency"]) for money in payload["revenue"]),
            transactions=payload["transactions"],
            failed_payments=payload["failedPayments"],
            updated_at=_time(payload["updatedAt"]),
        )


@dataclass(frozen=True, slots=True)
class ExperimentStatisticsMessage(LiveMessage):
    """The worker moved an experiment's statistics (exposures or metric values): subscribers
    read its results again (at most once a second each)."""

    organization_id: uuid.UUID
    experiment_id: uuid.UUID
    exposures: int  # persons newly exposed by the batch
    values: int  # person values the batch changed

    @classmethod
    def channel_of(cls, experiment_id: str) -> str:
        return experiment_channel(experiment_id)

    @property
    def channel(self) -> str:
        return experiment_channel(str(self.experiment_id))

    def to_json(self) -> Payload:
        return {"organizationId": str(self.organization_id), "experimentId": str(self.experiment_id),
                "exposures": self.exposures, "values": self.values}  # fmt: skip

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Self:
        return cls(organization_id=uuid.UUID(payload["organizationId"]), experiment_id=uuid.UUID(payload["experimentId"]),
                   exposures=payload["exposures"], values=payload["values"])  # fmt: skip


@dataclass(frozen=True, slots=True)
class MarketplaceCountersMessage(LiveMessage):
    """Today's counters of one organization's services marketplace (its local day): service
    executions and failures, searches, service views, conversions, and ledger revenue per
    currency (refunds netted)."""

    organization_id: uuid.UUID
    start: datetime
    end: datetime
    executions: int
    errors: int
    searches: int
    views: int
    conversions: int
    revenue: tuple[tuple[int, str], ...]  # (amount_minor, currency), by currency
    updated_at: datetime

    @classmethod
    def channel_of(cls, organization_id: str) -> str:
        return marketplace_channel(organization_id)

    @property
    def channel(self) -> str:
        return self.channel_of(str(self.organization_id))

    def to_json(self) -> Payload:
        return {
            "organizationId": str(self.organization_id),
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "executions": self.executions,
            "errors": self.errors,
            "searches": self.searches,
            "views": self.views,
            "conversions": self.conversions,
            "revenue": [{"amountMinor": amount, "currency": currency} for amount, currency in self.revenue],
            "updatedAt": self.updated_at.isoformat(),
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Self:
        return cls(
            organization_id=uuid.UUID(payload["organizationId"]),
            start=_time(payload["from"]),
            end=_time(payload["to"]),
            executions=payload["executions"],
            errors=payload["errors"],
            searches=payload["searches"],
            views=payload["views"],
            conversions=payload["conversions"],
            revenue=tuple((money["amountMinor"], money["currency"]) for money in payload["revenue"]),
            updated_at=_time(payload["updatedAt"]),
        )
