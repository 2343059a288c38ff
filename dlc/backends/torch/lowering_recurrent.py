"""Torch lowerings of the recurrent layers (rnn, gru, lstm) through the
`_rnn`/`_gru`/`_lstm` helpers on flat weights."""
from __future__ import annotations

from .lowering import _call, _register


# recurrent -----------------------------------------------------------------------

_RNN_KW = [("num_layers", 1), ("bias", True), ("bidirectional", False), ("batch_first", False)]


@_register("rnn", multi=True)
def _(o):
    return _call("_rnn", o[0], o[1] or "None", "[" + ", ".join(o.args[2:]) + "]",
                 *o.kw(("nonlinearity", "tanh")), *o.kw(*_RNN_KW))


@_register("gru", multi=True)
def _(o):
    return _call("_gru", o[0], o[1] or "None", "[" + ", ".join(o.args[2:]) + "]", *o.kw(*_RNN_KW))


@_register("lstm", multi=True)
def _(o):
    """proj_size needs no argument: torch.lstm sees it in h0's width."""
    return _call("_lstm", o[0], o[1] or "None", o[2] or "None", "[" + ", ".join(o.args[3:]) + "]",
                 *o.kw(*_RNN_KW))
