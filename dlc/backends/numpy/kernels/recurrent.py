"""NumPy reference kernels for the recurrent ops (rnn, lstm, gru), PyTorch semantics.

Inputs are always batched: x is (T, N, I), or (N, T, I) with batch_first.
Initial states are (num_layers * num_directions, N, H) regardless of
batch_first, and None means zeros.  ``weights`` come in the order of torch's
``module._flat_weights``: for each layer, for each direction,
w_ih, w_hh, b_ih, b_hh (biases omitted when bias=False; an LSTM with
proj_size > 0 appends w_hr).  Gate orders follow torch: LSTM (i, f, g, o),
GRU (r, z, n) with n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).

The input projection of a whole sequence is one matmul; only the recurrence
itself loops, over time steps.  Inter-layer dropout (torch's ``dropout``
argument) is a training-only feature and is not modelled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["KERNELS", "gru", "lstm", "rnn"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function (exp only ever sees non-positive arguments)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


# A cell maps (input projection xw_t, hidden projection hw_t, states, proj weight)
# to the new states; states[0] is always the hidden state that is emitted.
Cell = Callable[[np.ndarray, np.ndarray, tuple, np.ndarray | None], tuple]


def _rnn_cell(act):
    def cell(xw, hw, states, w_hr):
        return (act(xw + hw),)

    return cell


def _lstm_cell(xw, hw, states, w_hr):
    _, c = states
    i, f, g, o = np.split(xw + hw, 4, axis=-1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    h = _sigmoid(o) * np.tanh(c)
    if w_hr is not None:
        h = h @ w_hr.T
    return h, c


def _gru_cell(xw, hw, states, w_hr):
    (h,) = states
    xr, xz, xn = np.split(xw, 3, axis=-1)
    hr, hz, hn = np.split(hw, 3, axis=-1)
    r = _sigmoid(xr + hr)
    z = _sigmoid(xz + hz)
    # the reset gate multiplies the hidden projection *including* its bias b_hn
    n = np.tanh(xn + r * hn)
    # same association as ATen's GRU cell: (h - n) * z + n
    return ((h - n) * z + n,)


def _recurrent(
    x,
    init_states: Sequence[np.ndarray | None],
    weights: Sequence[np.ndarray],
    cell: Cell,
    *,
    num_gates: int,
    num_layers: int,
    bias: bool,
    bidirectional: bool,
    batch_first: bool,
    proj: bool = False,
):
    """Run a stacked (optionally bidirectional) recurrent net; returns (y, *final_states)."""
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
    x = x.astype(dtype, copy=False)
    if x.ndim != 3:
        raise ValueError(f"expected batched 3-d input, got shape {x.shape}")
    if batch_first:
        x = x.swapaxes(0, 1)
    batch = x.shape[1]
    dirs = 2 if bidirectional else 1
    per = (4 if bias else 2) + (1 if proj else 0)
    if len(weights) != num_layers * dirs * per:
        raise ValueError(
            f"expected {num_layers * dirs * per} weight tensors "
            f"(num_layers={num_layers}, bidirectional={bidirectional}, bias={bias}), "
            f"got {len(weights)}"
        )
    weights = [np.asarray(w).astype(dtype, copy=False) for w in weights]

    inits, h_out = _initial_states(init_states, weights, num_gates, num_layers * dirs, batch, dtype)
    finals: list[list[np.ndarray]] = [[] for _ in inits]
    layer_in = x
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            idx = layer * dirs + d
            group = weights[idx * per : (idx + 1) * per]
            states = tuple(s0[idx] for s0 in inits)
            ys, states = _run_direction(layer, layer_in, group, states, cell, bias=bias, proj=proj,
                                        reverse=d == 1, h_out=h_out)
            outs.append(ys)
            for final, s in zip(finals, states):
                final.append(s)
        layer_in = outs[0] if dirs == 1 else np.concatenate(outs, axis=-1)

    y = layer_in.swapaxes(0, 1) if batch_first else layer_in
    return (np.ascontiguousarray(y),) + tuple(np.stack(f) for f in finals)


def _initial_states(init_states, weights, num_gates: int, stacks: int, batch: int, dtype):
    """The initial states as (stacks, batch, size) arrays (zeros for None), and the
    output size H_out; the sizes come from the first layer: w_hh is (gates*H, H_out)."""
    hidden = weights[1].shape[0] // num_gates
    h_out = weights[1].shape[1]
    state_sizes = (h_out, hidden)[: len(init_states)]
    inits = []
    for s0, size in zip(init_states, state_sizes):
        if s0 is None:
            s0 = np.zeros((stacks, batch, size), dtype)
        s0 = np.asarray(s0).astype(dtype, copy=False)
        if s0.shape != (stacks, batch, size):
            raise ValueError(
                f"initial state has shape {s0.shape}, expected {(stacks, batch, size)}"
            )
        inits.append(s0)
    return inits, h_out


def _run_direction(layer: int, layer_in, group, states, cell: Cell, *, bias: bool, proj: bool,
                   reverse: bool, h_out: int):
    """One layer in one direction over every step: (per-step outputs (T, N, H_out), final states)."""
    w_ih, w_hh = group[0], group[1]
    b_ih, b_hh = (group[2], group[3]) if bias else (None, None)
    w_hr = group[-1] if proj else None
    if w_ih.shape[1] != layer_in.shape[-1]:
        raise ValueError(
            f"layer {layer}: w_ih expects input size {w_ih.shape[1]}, "
            f"got {layer_in.shape[-1]}"
        )
    steps, batch = layer_in.shape[:2]
    # no recurrence in the input projection: one matmul for all steps
    xw = layer_in @ w_ih.T
    if b_ih is not None:
        xw += b_ih
    w_hh_t = w_hh.T
    ys = np.empty((steps, batch, h_out), layer_in.dtype)
    order = range(steps) if not reverse else range(steps - 1, -1, -1)
    for t in order:
        hw = states[0] @ w_hh_t
        if b_hh is not None:
            hw += b_hh
        states = cell(xw[t], hw, states, w_hr)
        ys[t] = states[0]
    return ys, states


def rnn(
    x,
    h0,
    *weights,
    num_layers=1,
    nonlinearity="tanh",
    bias=True,
    bidirectional=False,
    batch_first=False,
):
    """Elman RNN, h' = act(W_ih x + b_ih + W_hh h + b_hh). Returns (y, h_n)."""
    acts = {"tanh": np.tanh, "relu": _relu}
    if nonlinearity not in acts:
        raise ValueError(
            f"unknown nonlinearity {nonlinearity!r}; expected 'tanh' or 'relu'"
        )
    return _recurrent(
        x,
        [h0],
        weights,
        _rnn_cell(acts[nonlinearity]),
        num_gates=1,
        num_layers=num_layers,
        bias=bias,
        bidirectional=bidirectional,
        batch_first=batch_first,
    )


def lstm(
    x,
    h0,
    c0,
    *weights,
    num_layers=1,
    bias=True,
    bidirectional=False,
    batch_first=False,
    proj_size=0,
):
    """LSTM with torch's gate order (i, f, g, o). Returns (y, h_n, c_n).

    With proj_size > 0 each (layer, direction) has a trailing w_hr and h is
    projected to proj_size, as in torch.
    """
    return _recurrent(
        x,
        [h0, c0],
        weights,
        _lstm_cell,
        num_gates=4,
        num_layers=num_layers,
        bias=bias,
        bidirectional=bidirectional,
        batch_first=batch_first,
        proj=proj_size > 0,
    )


def gru(
    x, h0, *weights, num_layers=1, bias=True, bidirectional=False, batch_first=False
):
    """GRU with torch's gate order (r, z, n). Returns (y, h_n)."""
    return _recurrent(
        x,
        [h0],
        weights,
        _gru_cell,
        num_gates=3,
        num_layers=num_layers,
        bias=bias,
        bidirectional=bidirectional,
        batch_first=batch_first,
    )


KERNELS = {
    "rnn": rnn,
    "lstm": lstm,
    "gru": gru,
}
