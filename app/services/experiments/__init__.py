"""Experiments: A/B tests as data, their assignment, exposures and statistics.

One module per job:
  * `stats`: the one statistics engine (frequentist, Bayesian, sequential, SRM, multiple
    testing, CUPED, power), pure functions of sufficient statistics;
  * `definitions`: experiments as data (checks, storage, audited status changes);
  * `assignment`: the deterministic hash and `experimentAssignment`;
  * `exposures`: exposures and the sufficient statistics the worker keeps (its consumer);
  * `results`: the results runner, the seed-shaped list, the live throttle;
  * `contract`: what ingestion reads (the exposure event's properties, tracked event types),
    free of the statistics' imports.
"""
