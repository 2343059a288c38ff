"""TVM lowering of losses, recurrences (rnn, lstm, gru) and `scan`.

Registered into `lowering.LOWERING`; see that module for the conventions.
"""
from __future__ import annotations
