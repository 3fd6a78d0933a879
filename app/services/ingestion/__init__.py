"""Event ingestion: validate, dedupe, enrich and store a batch in one transaction.

One module per step:
  * `service`: the entry points (`track_events`, `authorize`, `check_batch_size`,
    `rate_limit_key`) and the order of the steps;
  * `outcome`: what a call reports back (`TrackOutcome`, `Rejection`);
  * `validation`: checking each event without the database, naming the bad field;
  * `enrich`: device, place, source and visitor of each event (salts included);
  * `sessions`: the session of each event and the `sessions` rows;
  * `storage`: the transaction that writes outbox, events and sessions, and its retries.

The names below are what the rest of the application uses.
"""

from app.services.ingestion.enrich import EVENT_COLUMNS
from app.services.ingestion.outcome import Rejection, TrackOutcome
from app.services.ingestion.service import authorize, check_batch_size, rate_limit_key, track_events
from app.services.ingestion.validation import CONTEXT_FIELDS, EVENT_FIELDS

__all__ = [
    "CONTEXT_FIELDS",
    "EVENT_COLUMNS",
    "EVENT_FIELDS",
    "Rejection",
    "TrackOutcome",
    "authorize",
    "check_batch_size",
    "rate_limit_key",
    "track_events",
]
