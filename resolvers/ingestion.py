"""Ingestion over GraphQL (trackEvent, trackEvents, publishDomainEvents) and REST beacons.

Both doors turn their input into the plain snake_case dicts `app.services.ingestion`
takes and report the same `TrackResult`. Decisions:

- `trackEvent` answers an invalid event like a batch of one: a TrackResult with the
  rejection, not a GraphQL error, so clients handle one shape for both mutations.
- GraphQL passes no client IP: its callers are often backends forwarding events, whose
  own address is not the visitor's. Send `context.ip` to get geo and cookie-less ids.
- `POST /track` and `POST /track/batch` are for browsers (fetch or sendBeacon): the
  caller's address, its User-Agent header and its `DNT: 1` header are the defaults of
  `context.ip`, `context.userAgent` and `context.dnt`. X-Forwarded-For is not read:
  there is no trusted-proxy setting, and trusting it blindly lets anyone pick an IP.
- They answer 200 with the counts (the event is durable by then, so "accepted for
  later processing", 202, would undersell it), errors as
  `{"error": {"code", "message", "field", ...}}` with the error's HTTP status.
- The credential comes from `Authorization: Bearer ...` or, since sendBeacon cannot set
  headers, from `?key=`; a URL only carries ingestion keys (write-only and public by
  design), never a JWT, because URLs end up in access logs.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

import orjson
import strawberry
from starlette.requests import Request
from starlette.responses import Response
from strawberry.types import Info

from app.auth import KEY_PREFIX, Access, Viewer, viewer_from_credential
from app.database import unavailable_on_database_errors
from app.errors import BadInput, Unauthenticated, UserError
from app.services.ingestion import service
from app.services.ingestion.outcome import TrackOutcome
from app.services.ingestion.validation import CONTEXT_FIELDS, EVENT_FIELDS
from resolvers.common import app_state, guarded, viewer_of
from schema.ingestion import DomainEventInput, RejectedEvent, TrackEventInput, TrackResult

log = logging.getLogger("pulsegraph.ingestion")

# --------------------------------------------------------------------------- GraphQL


async def track_event(
    info: Info,
    event: Annotated[TrackEventInput, strawberry.argument(description="The event to record.")],
) -> TrackResult:
    """One event; an invalid one comes back as a rejection, as it would in a batch. The event
    arrives as the service's dict (see app.plain_inputs)."""
    return await _track(info, [event], domain=False)


async def track_events(
    info: Info,
    events: Annotated[
        list[TrackEventInput],
        strawberry.argument(
            description="Up to 1,000 events (the server's batch limit); each is accepted, a duplicate, "
            "dropped or rejected on its own."
        ),
    ],
) -> TrackResult:
    """A batch from a beacon, SDK or backend."""
    return await _track(info, list(events), domain=False)  # dicts already: see app.plain_inputs


async def publish_domain_events(
    info: Info,
    events: Annotated[
        list[DomainEventInput],
        strawberry.argument(description="Up to 1,000 domain events (the server's batch limit), idempotent by eventId."),
    ],
) -> TrackResult:
    """Domain events from a backend service (service or organization admin token)."""
    return await _track(info, [_domain_dict(e) for e in events], domain=True)


def _domain_dict(event: DomainEventInput) -> dict[str, Any]:
    """A Strawberry dataclass: its __dict__ has the service's snake_case keys (its context is
    a plain dict already, see app.plain_inputs); the type is the enum's value."""
    data = dict(event.__dict__)
    data["type"] = event.type.value
    return data


async def _track(info: Info, events: list[dict[str, Any]], *, domain: bool) -> TrackResult:
    state = app_state(info)
    outcome = await ingest(viewer=viewer_of(info), events=events, state=state, client_ip=None, domain=domain)
    return _result(outcome)


def _result(outcome: TrackOutcome) -> TrackResult:
    return TrackResult(
        accepted=outcome.accepted,
        duplicates=outcome.duplicates,
        dropped=outcome.dropped,
        rejected=[RejectedEvent(index=r.index, field=r.field, reason=r.reason) for r in outcome.rejected],
        event_ids=outcome.event_ids,
    )


async def ingest(
    *, viewer: Viewer, events: list[Any], state: Any, client_ip: str | None, domain: bool
) -> TrackOutcome:
    """Auth, then size, then the rate limit: refused calls cost no tokens, batches cost one per event."""
    settings = state.settings
    service.authorize(viewer=viewer, domain=domain)
    service.check_batch_size(count=len(events), settings=settings)
    state.rate_limiter.take(service.rate_limit_key(viewer), len(events))
    return await service.track_events(
        viewer=viewer, events=events, geo=state.geo, settings=settings, client_ip=client_ip, domain=domain
    )


# --------------------------------------------------------------------------- REST beacons

_SNAKE_EVENT = {camel: snake for snake, camel in EVENT_FIELDS.items()}
_SNAKE_CONTEXT = {camel: snake for snake, camel in CONTEXT_FIELDS.items()}
_HEADERS = {"access-control-allow-origin": "*", "cache-control": "no-store"}


async def track_endpoint(request: Request) -> Response:
    """POST /track: one JSON event with the GraphQL input's camelCase keys."""
    return await _beacon(request, batch=False)


async def track_batch_endpoint(request: Request) -> Response:
    """POST /track/batch: {"events": [...]}."""
    return await _beacon(request, batch=True)


async def _beacon(request: Request, *, batch: bool) -> Response:
    try:
        viewer = await rest_viewer(request)
        events = _rest_events(await _json_body(request), batch=batch)
        defaults = _rest_context_defaults(request)
        converted = [_rest_event(event, defaults) for event in events]
        client_ip = request.client.host if request.client else None
        outcome = await ingest(
            viewer=viewer, events=converted, state=request.app.state, client_ip=client_ip, domain=False
        )
    except UserError as exc:
        return error_response(exc)
    except Exception:
        return unexpected_error_response(request)
    return _json(_outcome_body(outcome), 200)


def unexpected_error_response(request: Request) -> Response:
    """A bug, logged with a request id the client can quote (called in an `except` block)."""
    request_id = uuid.uuid4().hex[:16]
    log.exception("unexpected error in %s [request %s]", request.url.path, request_id)
    body = {
        "error": {
            "code": "INTERNAL_SERVER_ERROR",
            "message": f"Internal error; quote request id {request_id}.",
            "requestId": request_id,
        }
    }
    return _json(body, 500)


async def rest_viewer(request: Request) -> Viewer:
    """Header first; a `?key=` only for ingestion keys (see the module docstring).

    Checking a key reads the database, so an outage answers 503 UNAVAILABLE here too.
    """
    credential = request.headers.get("authorization")
    if not credential:
        credential = request.query_params.get("key")
        if credential is not None and not credential.startswith(KEY_PREFIX):
            raise Unauthenticated(
                "?key= only takes ingestion keys; send tokens in the Authorization header", field="key"
            )
    async with unavailable_on_database_errors():
        return await viewer_from_credential(credential)


async def _json_body(request: Request) -> Any:
    """Any content type: sendBeacon posts text/plain to avoid a CORS preflight."""
    body = await request.body()
    if not body.strip():
        raise BadInput("the request body is empty; send a JSON event", field="body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"the request body is not valid JSON: {exc}", field="body") from None


def _rest_events(payload: Any, *, batch: bool) -> list[Any]:
    if not batch:
        if not isinstance(payload, dict):
            raise BadInput("the request body must be a JSON object (one event)", field="body")
        return [payload]
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise BadInput('the request body must be {"events": [...]}', field="events")
    events: list[Any] = payload["events"]
    return events


def _rest_context_defaults(request: Request) -> dict[str, Any]:
    """What the browser itself tells us about the visitor, unless the event says otherwise."""
    defaults: dict[str, Any] = {}
    user_agent = request.headers.get("user-agent")
    if user_agent:
        defaults["user_agent"] = user_agent
    if request.headers.get("dnt") == "1":
        defaults["dnt"] = True
    return defaults


def _rest_event(event: Any, defaults: Mapping[str, Any]) -> Any:
    """camelCase to snake_case; unknown keys pass through so the service rejects them by name."""
    if not isinstance(event, dict):
        return event
    data = {_SNAKE_EVENT.get(key, key): value for key, value in event.items()}
    context = data.get("context")
    if context is None:
        data["context"] = dict(defaults) if defaults else None
    elif isinstance(context, dict):
        converted = {_SNAKE_CONTEXT.get(key, key): value for key, value in context.items()}
        for key, value in defaults.items():
            if converted.get(key) is None:
                converted[key] = value
        data["context"] = converted
    return data


def _outcome_body(outcome: TrackOutcome) -> dict[str, Any]:
    return {
        "accepted": outcome.accepted,
        "duplicates": outcome.duplicates,
        "dropped": outcome.dropped,
        "rejected": [{"index": r.index, "field": r.field, "reason": r.reason} for r in outcome.rejected],
        "eventIds": outcome.event_ids,
    }


def error_response(exc: UserError) -> Response:
    """The same code, field and extensions (retryAfterSeconds, ...) a GraphQL client gets."""
    body = {"error": {"code": exc.code, "message": exc.message, "field": exc.field, **exc.extensions}}
    response = _json(body, exc.http_status)
    retry_after = exc.extensions.get("retryAfterSeconds")
    if retry_after is not None:
        response.headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    return response


def _json(body: dict[str, Any], status: int) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=_HEADERS)


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Mutation:
    """The ingestion domain's writes, merged into the root by schema.root."""

    track_event: TrackResult = guarded(Access.INGESTERS, track_event, "Record one event.")
    track_events: TrackResult = guarded(
        Access.INGESTERS, track_events,
        "Record up to 1,000 events at once; valid ones are stored even when others are rejected.",
    )
    publish_domain_events: TrackResult = guarded(
        Access.PUBLISHERS, publish_domain_events,
        "Publish domain events from a backend service; idempotent by eventId.",
    )
