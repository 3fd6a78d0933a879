"""What the demo organization did before the newcomer arrived: pure generators of events and
cost entries over a history of more than a year (app/services/demo.py seeds them).

Every generator takes a `Timeline` (its first instant, the moment of seeding, the time zone)
and a seed, and yields plain event dicts in the shape `trackEvents` takes. The same seed and
timeline give the same events, and no event is at or after the timeline's end, so nothing
the demo shows lies in the future.

Volume follows one shape everywhere (`Timeline.days`): gentle growth (a few percent a month,
so a period reads a little above the one before it) and a weekly rhythm (busier at the
weekend), with a little day-to-day noise.
"""
