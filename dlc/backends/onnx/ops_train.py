"""Losses and the ops only training graphs use."""
from __future__ import annotations
