"""Profile analytics: the worker's effects on profile events, and the reports over them.

One module per job:
  * `sketches`: unique counts as HyperLogLog sketches (DataSketches), their estimates and unions;
  * `effects`: the worker's write path (`apply_events`, `ProfileConsumer`) and its live messages;
  * `planner`: which closed buckets of a range come from rollups, which open part from raw events;
  * `reports`: the report runners the resolvers call (overview, time series, recent views);
  * `rebuild`: recomputing every rollup from the worker's ledger (`rebuild_rollups`).

The names below are what the rest of the application uses.
"""

from app.services.profile_analytics.effects import (
    AppliedBatch,
    ProfileConsumer,
    apply_events,
    engagement_snapshots,
    view_message,
)
from app.services.profile_analytics.planner import Segment, plan_segments
from app.services.profile_analytics.rebuild import RebuildStats, rebuild_rollups
from app.services.profile_analytics.reports import (
    Overview,
    Timeseries,
    profile_overview,
    profile_timeseries,
    recent_profile_views,
)
from app.services.profile_analytics.sketches import Uniques

__all__ = [
    "AppliedBatch",
    "Overview",
    "ProfileConsumer",
    "RebuildStats",
    "Segment",
    "Timeseries",
    "Uniques",
    "apply_events",
    "engagement_snapshots",
    "plan_segments",
    "profile_overview",
    "profile_timeseries",
    "rebuild_rollups",
    "recent_profile_views",
    "view_message",
]
