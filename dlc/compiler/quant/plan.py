"""`QuantPlan`: what calibration decided, the input of the quantize pass.

    plan = QuantPlan(method="entropy", per_channel=True,
                     ranges={"conv1:in": (0.0, 16.0), "conv1:out": (0.0, 9.5), ...},
                     float_layers={"output"})
    text = plan.to_json(); QuantPlan.from_json(text) == plan

`ranges` is keyed by site key: "<layer>:in" (the layer's input activation)
and "<layer>:out" (its output, after a relu epilogue), see `sites.py`.
`float_layers` are layer names kept in fp32 (the accuracy budget's fallback).
JSON floats round-trip exactly (repr), so a plan read back gives the same
scales bit for bit.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from ...errors import DlcError

PLAN_VERSION = 1
_METHODS = ("minmax", "percentile", "entropy")


@dataclass
class QuantPlan:
    method: str = "minmax"
    per_channel: bool = True
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    float_layers: set[str] = field(default_factory=set)

    def __post_init__(self):
        if self.method not in _METHODS:
            raise DlcError(f"unknown calibration method {self.method!r}", hint="use " + ", ".join(_METHODS))
        if not isinstance(self.per_channel, bool):
            raise DlcError(f"per_channel must be true or false, got {self.per_channel!r}")
        ranges = {}
        for key, r in dict(self.ranges).items():
            if not isinstance(key, str) or not key.endswith((":in", ":out")):
                raise DlcError(f"bad range key {key!r}", hint="keys are '<layer>:in' or '<layer>:out'")
            try:
                lo, hi = (float(v) for v in r)
            except (TypeError, ValueError):
                raise DlcError(f"the range of {key} must be two numbers (lo, hi), got {r!r}") from None
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise DlcError(f"the range of {key} must be finite with lo <= hi, got ({lo}, {hi})")
            ranges[key] = (lo, hi)
        self.ranges = ranges
        self.float_layers = set(self.float_layers)
        if not all(isinstance(n, str) for n in self.float_layers):
            raise DlcError("float_layers must be layer names (strings)")

    def to_dict(self) -> dict:
        return {"version": PLAN_VERSION, "method": self.method, "per_channel": self.per_channel,
                "ranges": {k: [lo, hi] for k, (lo, hi) in sorted(self.ranges.items())},
                "float_layers": sorted(self.float_layers)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @staticmethod
    def from_dict(d) -> "QuantPlan":
        if not isinstance(d, dict):
            raise DlcError("a quantization plan is a JSON object")
        if d.get("version", PLAN_VERSION) != PLAN_VERSION:
            raise DlcError(f"quantization plan version {d.get('version')!r} is not supported",
                           hint=f"this dlc reads version {PLAN_VERSION}: re-run dlc quantize")
        unknown = set(d) - {"version", "method", "per_channel", "ranges", "float_layers"}
        if unknown:
            raise DlcError(f"unknown fields in the quantization plan: {', '.join(sorted(unknown))}")
        ranges = d.get("ranges", {})
        if not isinstance(ranges, dict):
            raise DlcError("the plan's ranges must be an object {site: [lo, hi]}")
        return QuantPlan(method=d.get("method", "minmax"), per_channel=d.get("per_channel", True),
                         ranges={k: tuple(v) if isinstance(v, list) else v for k, v in ranges.items()},
                         float_layers=set(d.get("float_layers", [])))

    @staticmethod
    def from_json(text: str) -> "QuantPlan":
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, TypeError) as e:
            raise DlcError(f"the quantization plan is not valid JSON: {e}") from None
        return QuantPlan.from_dict(d)
