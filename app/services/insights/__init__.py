"""Product analytics over every stored event: persons, the one filter grammar, and a query
runner per insight (trends, funnels, retention, lifecycle, stickiness, sessions).

Definitions every insight shares (the README's insights section states them too):
- The person of an event is its identified user ('u:<user id>'), else its anonymous id
  ('a:<anonymous id>'), else the cookie-less visitor hash; an anonymous id linked to a user
  by an identify counts as that user, for events received before the link too. Events
  without any identity (do-not-track) count in totals and never as a person.
- Events of one person are ordered by event time, then by arrival (received_at), then by
  event id.
- Periods are the organization's local hours, days, ISO weeks (from Monday) and months.
"""
