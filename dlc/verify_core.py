"""`dlc verify`: every backend at every -O level against the float64 NumPy reference.

    report = dlc.verify(dlc.load("specs/mlp.dln"), backends=("numpy", "torch"), levels=(0, 2))
    report.ok, report.rows[0].max_abs, report.divergence

The reference is the NumPy backend at -O0 run in float64 on the same weights
and inputs as every other run (those are drawn once, in the model's dtype, and
the reference gets them widened, so both see the same numbers).  A run passes
when, for every output, max|got - ref| <= rtol * max|ref| + atol (the error is
measured against the output's scale, as tests/compiler/passes/harness.py does,
because an elementwise relative test fails on every output entry near zero).
On the first failing row, `verify_bisect` finds the first IR node that diverges
and writes a reproducer.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import DlcError, DlcValueError

# (rtol, atol) by the dtype a backend ran in, for a forward output and for a
# gradient / optimizer step.  float32: the unit roundoff is 6e-8; a sum of n
# terms rounds to about sqrt(n) * 6e-8 relative to the output's scale in
# practice (worst case n * 6e-8), so 1e-4 covers reductions of ~10^6 terms at
# typical growth, and our zoo's deepest reductions (4608-wide convs) with
# margin.  A backward graph is about twice as deep and sums over the batch,
# so its bound is 10x wider.  float64 runs (the NumPy backend at -O1..3) must
# match the reference as the pass tests require (1e-10).  Integer and bool
# outputs must be equal.
#   --precision bf16/fp16 (the autocast pass: convs and matmuls in the low dtype, with float32 accumulation and
# statistics): their operands round to 2^-9 (bf16) and 2^-11 (fp16) relative, so an output within 5e-2 (bf16)
# or 1e-2 (fp16) of its scale, and a gradient within twice that, is that rounding through a deep net, as
# `dlc bench` holds them (bench_check.TOLERANCES); a wrong kernel is off by its own scale.
TOLERANCES = {
    "float32": {"forward": (1e-4, 1e-6), "grad": (1e-3, 1e-6)},
    "float64": {"forward": (1e-10, 1e-12), "grad": (1e-10, 1e-12)},
    "bfloat16": {"forward": (5e-2, 1e-3), "grad": (1e-1, 1e-3)},
    "float16": {"forward": (1e-2, 1e-4), "grad": (2e-2, 1e-4)},
}
PRECISIONS = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}
BACKENDS = ("numpy", "torch", "tvm")                # the default
KNOWN_BACKENDS = (*BACKENDS, "tvm-cuda")            # tvm-cuda: on a machine with an NVIDIA GPU


def tolerance(dtype: str, what: str) -> tuple[float, float]:
    kind = "forward" if what == "forward" else "grad"
    return TOLERANCES.get(dtype, TOLERANCES["float32"])[kind]


@dataclass
class Row:
    """One backend at one level, one kind of result (forward, grad, step)."""

    backend: str
    level: int
    what: str                      # "forward", "grad" or "step"
    dtype: str
    max_abs: float = 0.0
    max_rel: float = 0.0           # max_abs / max|ref| of the worst output
    rtol: float = 0.0
    atol: float = 0.0
    worst: str = ""                # the output with the largest relative error
    passed: bool = True
    error: str | None = None       # the run failed (a DlcError's message)


@dataclass
class Divergence:
    """The first IR node whose output leaves the tolerance."""

    backend: str
    level: int
    op: str
    location: str                  # file:line:col
    source: str                    # the .dln line with a caret under the node
    max_abs: float
    max_rel: float
    rtol: float
    atol: float
    graph_level: int               # the -O level of the graph bisected
    repro: str | None = None       # the reproducer .dln
    repro_inputs: str | None = None
    repro_note: str | None = None  # why no reproducer was written


@dataclass
class VerifyReport:
    model: str
    file: str
    seed: int
    rows: list[Row] = field(default_factory=list)
    divergence: Divergence | None = None

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.passed]

    def to_dict(self) -> dict:
        return {"model": self.model, "file": self.file, "seed": self.seed, "ok": self.ok,
                "tolerances": TOLERANCES, "rows": [asdict(r) for r in self.rows],
                "divergence": asdict(self.divergence) if self.divergence else None}

    def render(self) -> str:
        out = [f"verify {self.model} ({self.file}), seed {self.seed}: reference numpy -O0 float64",
               f"{'backend':8} {'-O':>2} {'what':8} {'dtype':8} {'max abs':>10} {'max rel':>10} "
               f"{'rtol':>7} {'atol':>7}  result"]
        for r in self.rows:
            res = "ok" if r.passed else ("ERROR " + (r.error or "") if r.error else f"MISMATCH ({r.worst})")
            out.append(f"{r.backend:8} {r.level:>2} {r.what:8} {r.dtype:8} {r.max_abs:10.3g} {r.max_rel:10.3g} "
                       f"{r.rtol:7.0e} {r.atol:7.0e}  {res}")
        d = self.divergence
        if d is not None:
            out.append(f"first diverging node ({d.backend}, bisected on the -O{d.graph_level} graph): {d.op}, "
                       f"max abs {d.max_abs:.3g}, max rel {d.max_rel:.3g} > rtol {d.rtol:g} + atol {d.atol:g}")
            out.append(d.source)
            if d.repro:
                out.append(f"reproducer: {d.repro} (inputs {d.repro_inputs}); run `dlc verify {d.repro}`")
            elif d.repro_note:
                out.append(f"no reproducer: {d.repro_note}")
        if d is None and not self.ok and not any(r.error for r in self.failures):
            out.append("no forward node diverges at -O0 or at the failing level: the mismatch is in the "
                       "gradient or optimizer-step graph, which the bisection does not search")
        out.append("OK" if self.ok else f"FAILED: {len(self.failures)} of {len(self.rows)} runs")
        return "\n".join(out)


def compare(ref: dict, got: dict, dtype: str, what: str) -> tuple[float, float, str, bool]:
    """(max abs error, max relative-to-scale error, worst output, passed) over the outputs of `ref`.

    A forward output's scale is its own max |ref|.  Gradients and step updates
    share one scale, the largest |ref| entry of them all (with the loss): a
    parameter whose gradient cancels to ~0 in exact arithmetic (the gain of a
    norm under a sum) gets float32 rounding noise measured against the
    gradient vector an optimizer sees, not against its own zero."""
    rtol, atol = tolerance(dtype, what)
    worst, max_abs, max_rel, passed = "", 0.0, 0.0, True
    shared = None
    if what != "forward":
        mags = [np.abs(np.asarray(r, dtype=np.float64)) for r in ref.values() if np.asarray(r).dtype.kind in "fc"]
        shared = max((float(m[np.isfinite(m)].max()) for m in mags if np.isfinite(m).any()), default=0.0)
    for k, r in ref.items():
        if k not in got:
            return float("inf"), float("inf"), k, False
        a, b = np.asarray(r), np.asarray(got[k])
        if a.shape != b.shape:
            return float("inf"), float("inf"), k, False
        if a.dtype.kind not in "fc":
            ok = bool(np.array_equal(a, b))
            err = 0.0 if ok else float("inf")
            rel = err
        else:
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            if not np.array_equal(np.isfinite(a64), np.isfinite(b64)) or \
                    not np.array_equal(a64[~np.isfinite(a64)], b64[~np.isfinite(a64)], equal_nan=True):
                err, rel, ok = float("inf"), float("inf"), False
            else:
                fin = np.isfinite(a64)
                diff = np.abs(a64[fin] - b64[fin])
                err = float(diff.max()) if diff.size else 0.0
                scale = shared if shared is not None else (float(np.abs(a64[fin]).max()) if diff.size else 0.0)
                rel = err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))
                ok = err <= rtol * scale + atol
        if not ok:
            passed = False
        if rel >= max_rel or not worst:
            worst, max_rel = k, rel
        max_abs = max(max_abs, err)
    return max_abs, max_rel, worst, passed


def as_f64(arrays: dict) -> dict:
    return {k: (np.asarray(v).astype("float64") if np.asarray(v).dtype.kind == "f" else np.asarray(v))
            for k, v in arrays.items()}


def _label(m, bind: dict, seed: int):
    from .compiler.analysis import index_bound
    g, _ = m.grad_graph("train", bind)
    env = {**{k: v for k, v in g.dims.items() if v is not None}, **bind}
    rng = np.random.default_rng(seed + 1)
    for v in g.inputs:
        if v.name == "label":
            t = v.type.concrete(env)
            if t.dtype.is_int:
                return rng.integers(0, index_bound(g, v), size=t.shape).astype(t.dtype.numpy_name)
            return rng.standard_normal(t.shape).astype(t.dtype.numpy_name)
    return None


def verify(model, *, backends=BACKENDS, levels=(0, 2, 3), train: bool = False, seed: int = 0,
           bind: dict | None = None, weights: dict | None = None, inputs: dict | None = None,
           bisect: bool = True, repro_dir: str | None = None, precisions=("fp32",)) -> VerifyReport:
    """Check `model` (a `dlc.Model`) on `backends` x `levels` x `precisions`
    against the float64 NumPy reference at -O0; with `train`, also the loss
    gradients and one optimizer step.  On a failure with `bisect`,
    `report.divergence` names the first diverging node and (with `repro_dir`)
    a reproducer is written there."""
    from .backends import get_backend
    for b in backends:
        if b not in KNOWN_BACKENDS:
            raise DlcValueError(f"unknown backend '{b}'", None, f"choose from {', '.join(KNOWN_BACKENDS)}")
        get_backend(b).check_available()
    for p in precisions:
        if p not in PRECISIONS:
            raise DlcValueError(f"unknown precision '{p}'", None, f"choose from {', '.join(PRECISIONS)}")
    bind = dict(bind or {})
    inputs = dict(inputs) if inputs else model.random_inputs(seed, bind)
    weights = dict(weights) if weights is not None else model.init_weights(seed)
    ref_model = model.optimize(level=0)
    ref = ref_model.run(as_f64(inputs), as_f64(weights), bind=bind, seed=seed, dtype="float64")
    report = VerifyReport(model.name, model.path, seed)
    label = _label(model, bind, seed) if train else None
    ref_grad = ref_model.grad(as_f64(inputs), as_f64(weights), label=label, seed=seed, bind=bind) if train else None
    ref_step = None
    has_section = any(t.model == model.name for t in model.module.trains)
    if train and has_section:   # without a train section: the gradients of the sum of the first output only
        from .verify_step import one_step
        ref_step = one_step(ref_model, "numpy", as_f64(inputs), as_f64(weights), label, bind, seed)
    for b in backends:
        for level in levels:
            for p in precisions:
                _check_level(report, model.optimize(level=level, precision=p), b, level, PRECISIONS[p], train,
                             (inputs, weights, label, bind, seed), (ref, ref_grad, ref_step))
    if bisect and not report.ok:
        from .verify_bisect import bisect_failure
        report.divergence = bisect_failure(model, _to_bisect(report.failures), inputs, weights, bind, seed,
                                           repro_dir)
    return report


def _check_level(report, lm, b: str, level: int, low: str | None, train: bool, data, refs) -> None:
    """The rows of one backend at one level and precision (`low`: the autocast dtype, or None for fp32)."""
    inputs, weights, label, bind, seed = data
    ref, ref_grad, ref_step = refs
    # the NumPy backend at -O>0 in fp32 runs in float64 too: it checks the passes to the pass tests' bound
    f64 = b == "numpy" and low is None
    dt = "float64" if f64 else (low or _model_dtype(lm))
    feed, w = (as_f64(inputs), as_f64(weights)) if f64 else (inputs, weights)
    report.rows.append(_row(b, level, "forward", dt, ref,
                            lambda: lm.run(feed, w, backend=b, bind=bind, seed=seed,
                                           dtype="float64" if f64 else None)))
    if train:
        report.rows.append(_row(b, level, "grad", dt, ref_grad,
                                lambda: lm.grad(feed, w, label=label, seed=seed, bind=bind, backend=b)))
        if ref_step is not None:
            from .verify_step import one_step
            report.rows.append(_row(b, level, "step", dt, ref_step,
                                    lambda: one_step(lm, b, feed, w, label, bind, seed)))


def _to_bisect(failures: list[Row]) -> Row:
    """The failing row to bisect: a forward numeric mismatch, a kernel backend's
    before NumPy's (a NumPy float64 row that fails points to a pass, which
    bisection cannot localise); else the first failure."""
    fwd = [r for r in failures if r.what == "forward" and r.error is None]
    return next((r for r in fwd if r.backend != "numpy"), fwd[0] if fwd else failures[0])


def _model_dtype(model) -> str:
    for v in model.graph.outputs:
        if v.type.dtype.is_float:
            return "float64" if v.type.dtype.numpy_name == "float64" else "float32"
    return "float32"


def _row(backend: str, level: int, what: str, dtype: str, ref: dict, run) -> Row:
    rtol, atol = tolerance(dtype, what)
    row = Row(backend, level, what, dtype, rtol=rtol, atol=atol)
    try:
        got = run()
    except DlcError as e:
        row.passed, row.error = False, e.message
        return row
    except Exception as e:  # noqa: BLE001 - a backend that crashes is a finding, reported in its row
        row.passed, row.error = False, f"internal error: {type(e).__name__}: {e}".splitlines()[0]
        return row
    row.max_abs, row.max_rel, row.worst, row.passed = compare(ref, got, dtype, what)
    return row
