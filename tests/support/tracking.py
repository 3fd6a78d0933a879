"""The trackEvent(s) operations as ingestion tests send them, and a desktop browser's user
agent to send with them."""

from __future__ import annotations

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
TRACK_EVENTS = """
mutation Track($events: [TrackEventInput!]!) {
  trackEvents(events: $events) { accepted duplicates dropped rejected { index field reason } }
}
"""
TRACK_EVENT = """
mutation Track($event: TrackEventInput!) {
  trackEvent(event: $event) { accepted duplicates dropped rejected { index field reason } eventIds }
}
"""
