"""Experiments: A/B tests as data, their assignment, exposures and statistics.

One module per job:
  * `stats`: the one statistics engine (frequentist, Bayesian, sequential, SRM, multiple
    testing, CUPED, power), pure functions of sufficient statistics;
"""
