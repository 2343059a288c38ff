"""Default schedules (dlight rules) for the TVM backend."""
from __future__ import annotations

from .cpu import (
                  Fallback,
                  Injective,
                  InnerSpatialReduction,
                  RowReduction,
                  TiledContraction,
                  cpu_rules,
                  vector_lanes,
)

__all__ = [
                  "Fallback",
                  "Injective",
                  "InnerSpatialReduction",
                  "RowReduction",
                  "TiledContraction",
                  "cpu_rules",
                  "vector_lanes",
]
