"""QuantizeLinear/DequantizeLinear (the QDQ format)."""
from __future__ import annotations
