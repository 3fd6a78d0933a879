"""A services marketplace: service executions with latency percentiles and error rates,
searches, views and conversions by service and category, and its revenue (GMV, MRR and its
movements, take rate, creator earnings).

One module per job:
  * `vocabulary`: the marketplace's events and the properties checked at ingestion;
  * `sketches`: KLL latency sketches and their error bound;
  * `rollups`: the worker's write path (executions into hour, day and month rollups) and
    today's counters pushed live (`MarketplaceConsumer`);
  * `scope`: who may read an organization's marketplace reports;
  * `service_metrics`, `marketplace_metrics`, `revenue_metrics`: the report runners;
  * `stream`: the Server-Sent Events stream of live counters and channels.
"""

from app.services.marketplace.rollups import MarketplaceConsumer

__all__ = ["MarketplaceConsumer"]
