"""Calibration ranges from observers: the method's (lo, hi) for one key.

minmax is the observed extremes; percentile and entropy are the compiler's
estimators (`dlc.compiler.quant`), applied to the observer's sample with the
exact extremes alongside."""
from __future__ import annotations


def estimate_range(obs, method: str) -> tuple[float, float]:
    if method == "minmax":
        return float(obs.lo), float(obs.hi)
    from .compiler.quant import calibration
    return calibration.estimate(method, obs.sample, lo=obs.lo, hi=obs.hi)
