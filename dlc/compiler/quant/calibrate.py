"""Range estimators for calibration: observers that accumulate over batches.

    obs = make_observer("entropy")          # or "minmax", "percentile" (percentile=99.99)
    for batch in data:
        obs.update(activation_of(batch))    # any shape, any float dtype
    lo, hi = obs.range()

* minmax: the smallest and largest value seen.
* percentile (default 99.99): by default of |x| ("abs", what onnxruntime's
  symmetric percentile does): t = the p-th percentile of |x|, range
  (max(min, -t), min(max, t)); so a non-negative activation gets (0, t).
  `tails="both"` takes the (100 - p)-th and p-th percentiles of x itself.
* entropy: TensorRT's calibration.  A 2048-bin histogram of |x|; for every
  candidate threshold i in [128, 2048] bins, P = the first i bins with the
  mass beyond folded into the last, Q = P merged into 128 levels and
  spread back over P's non-empty bins; the threshold minimising KL(P || Q)
  wins (the first on ties), as the upper edge of bin i.  The range is then
  clipped like the percentile's.

The histograms stream: the bins cover [0, R] (or [-R, R]) and when a batch
goes beyond R, R doubles as often as needed and each new bin sums 2^k old
ones: an exact re-binning, so the result does not depend on how the data is
split into batches once R is settled (it does depend on the first batch's
R, as in onnxruntime and TensorRT).
"""
from __future__ import annotations

import numpy as np

from ...errors import DlcError

BINS = 2048
QUANT_LEVELS = 128          # TensorRT's 128 levels of |x| for int8
METHODS = ("minmax", "percentile", "entropy")


class Observer:
    """Accumulates a tensor's values over batches; `range()` gives (lo, hi)."""

    def __init__(self):
        self.lo = np.inf
        self.hi = -np.inf
        self.count = 0

    def update(self, x) -> None:
        a = np.asarray(x, dtype=np.float64).ravel()
        if a.size == 0:
            return
        if not np.all(np.isfinite(a)):
            raise DlcError("calibration data produced a non-finite activation (inf or NaN)",
                           hint="check the calibration inputs and the weights")
        self.lo = min(self.lo, float(a.min()))
        self.hi = max(self.hi, float(a.max()))
        self.count += a.size
        self._accumulate(a)

    def _accumulate(self, a: np.ndarray) -> None:
        pass

    def _check(self) -> None:
        if self.count == 0:
            raise DlcError("the observer saw no data", hint="run at least one calibration batch")

    def range(self) -> tuple[float, float]:
        self._check()
        return self.lo, self.hi


class MinMaxObserver(Observer):
    """The smallest and largest value seen (outliers included)."""


class _Histogram:
    """A streaming histogram of BINS bins over [0, R] (`signed`: [-R, R]) that doubles R to fit."""

    def __init__(self, signed: bool):
        self.signed = signed
        self.bound = 0.0
        self.counts = np.zeros(BINS, np.float64)

    def add(self, a: np.ndarray) -> None:
        top = float(np.abs(a).max())
        if self.bound == 0.0:
            self.bound = top if top > 0 else 0.0
        elif top > self.bound:
            self._grow(top)
        if self.bound == 0.0:                           # all zeros so far
            self.counts[BINS // 2 if self.signed else 0] += a.size
            return
        lo = -self.bound if self.signed else 0.0
        h, _ = np.histogram(a, bins=BINS, range=(lo, self.bound))
        self.counts += h

    def _grow(self, top: float) -> None:
        k = int(np.ceil(np.log2(top / self.bound)))
        while self.bound * 2.0 ** k < top:               # guard the log's rounding
            k += 1
        f = 2 ** min(k, 11)
        old = self.counts.reshape(BINS // f, f).sum(axis=1) if f > 1 else self.counts
        new = np.zeros(BINS, np.float64)
        start = (BINS - BINS // f) // 2 if self.signed else 0
        new[start:start + BINS // f] = old
        self.counts, self.bound = new, self.bound * 2.0 ** k

    @property
    def width(self) -> float:
        return (2 * self.bound if self.signed else self.bound) / BINS

    def edge(self, i: int) -> float:
        """The left edge of bin i (i = BINS: the right end)."""
        return (-self.bound if self.signed else 0.0) + i * self.width


class PercentileObserver(Observer):
    """The p-th percentile of |x| (tails="abs", the default) or of both tails of x ("both")."""

    def __init__(self, percentile: float = 99.99, tails: str = "abs"):
        super().__init__()
        if not 0 < percentile <= 100:
            raise DlcError(f"the percentile must be in (0, 100], got {percentile}")
        if tails not in ("abs", "both"):
            raise DlcError(f"tails must be 'abs' or 'both', got {tails!r}")
        self.percentile, self.tails = float(percentile), tails
        self.hist = _Histogram(signed=tails == "both")

    def _accumulate(self, a):
        self.hist.add(a if self.tails == "both" else np.abs(a))

    def _upper(self, q: float) -> float:
        """The right edge of the first bin where the cumulative share reaches q."""
        cdf = np.cumsum(self.hist.counts)
        i = int(np.searchsorted(cdf, q * cdf[-1] * (1 - 1e-12)))
        return self.hist.edge(min(i + 1, BINS))

    def range(self):
        self._check()
        p = self.percentile / 100.0
        if self.tails == "both":
            cdf = np.cumsum(self.hist.counts)
            j = int(np.searchsorted(cdf, (1 - p) * cdf[-1], side="right"))
            lo = self.hist.edge(min(j, BINS))
            return max(self.lo, lo), min(self.hi, self._upper(p))
        t = self._upper(p)
        return max(self.lo, -t), min(self.hi, t)


class EntropyObserver(Observer):
    """TensorRT's KL-divergence threshold over a 2048-bin histogram of |x|."""

    def __init__(self):
        super().__init__()
        self.hist = _Histogram(signed=False)

    def _accumulate(self, a):
        self.hist.add(np.abs(a))

    def threshold(self) -> float:
        self._check()
        return self.hist.edge(kl_threshold_bin(self.hist.counts))

    def range(self):
        t = self.threshold()
        return max(self.lo, -t), min(self.hi, t)


def _smooth(p: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Give the empty bins of a distribution eps of mass and renormalise, so that KL stays finite
    where Q is empty but P is not (TensorRT and onnxruntime smooth the same way, by subtraction)."""
    out = np.where(p == 0, eps, p)
    return out / out.sum()


def kl_divergence_at(counts: np.ndarray, i: int, levels: int = QUANT_LEVELS) -> float:
    """KL(P || Q) for threshold bin i: P = counts[:i] with the tail folded into bin i - 1; Q = the
    first i bins merged into `levels` groups of i // levels bins (the last group takes the rest, as
    TensorRT and onnxruntime do), each group's mass spread evenly over its non-empty bins."""
    p = counts[:i].astype(np.float64).copy()
    p[i - 1] += counts[i:].sum()
    group = np.minimum(np.arange(i) // (i // levels), levels - 1)
    nonzero = counts[:i] != 0
    mass = np.bincount(group, weights=counts[:i], minlength=levels)
    filled = np.bincount(group, weights=nonzero, minlength=levels)
    share = np.divide(mass, filled, out=np.zeros(levels), where=filled > 0)
    q = np.where(nonzero, share[group], 0.0)
    total_p, total_q = p.sum(), q.sum()
    if total_p == 0 or total_q == 0:
        return np.inf
    p, q = _smooth(p / total_p), _smooth(q / total_q)
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def kl_threshold_bin(counts: np.ndarray, levels: int = QUANT_LEVELS) -> int:
    """The number of bins (the threshold's bin edge) in [levels, len(counts)] minimising KL; first on ties."""
    n = len(counts)
    best, best_i = np.inf, n
    for i in range(levels, n + 1):
        kl = kl_divergence_at(counts, i, levels)
        if kl < best:
            best, best_i = kl, i
    return best_i


def make_observer(method: str, **options) -> Observer:
    """An observer for a calibration method: minmax, percentile (percentile=, tails=) or entropy."""
    if method == "minmax":
        return MinMaxObserver(**options)
    if method == "percentile":
        return PercentileObserver(**options)
    if method == "entropy":
        return EntropyObserver(**options)
    raise DlcError(f"unknown calibration method {method!r}", hint="use " + ", ".join(METHODS))
