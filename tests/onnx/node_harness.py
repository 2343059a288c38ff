"""Running the ONNX backend node tests (`onnx.backend.test.case.node`) through dlc:
import the test's model, then run it on a backend and compare with the expected
outputs at the test's own tolerances.

Inputs that a shape-like operand needs (a Reshape's shape, Slice bounds) are
given at import time (`input_values`), as dlc compiles static shapes; every
other input stays a model input.  `python tests/onnx/node_harness.py numpy`
prints the pass rates and each failure with its reason.
"""
from __future__ import annotations

import functools
import sys

import numpy as np

from dlc.errors import DlcError


@functools.lru_cache(maxsize=1)
def all_cases() -> dict:
    from onnx.backend.test.case.node import collect_testcases
    return {c.name: c for c in collect_testcases() if c.kind == "node"}


def model_ops(case) -> set[str]:
    out = set()

    def visit(g):
        for n in g.node:
            out.add((n.domain or "", n.op_type))
            for a in n.attribute:
                if a.g is not None and a.g.node:
                    visit(a.g)
                for sg in a.graphs:
                    visit(sg)
    visit(case.model.graph)
    return out


def in_scope(case) -> bool:
    """Every op of the test's model has an entry in the converter table (at some opset)."""
    from dlc.frontend.onnx.registry import CONVERTERS, normalize_domain
    return all((normalize_domain(d), op) in CONVERTERS for d, op in model_ops(case))


def types_in_scope(case) -> bool:
    """Every graph input and output has an element type dlc's IR has (no int16, uint16/32/64,
    bfloat16, float8/4, int4/2, string)."""
    from dlc.frontend.onnx.context import NP_TO_DTYPE
    from dlc.frontend.onnx.loader import ONNX_TO_NUMPY
    ok = {code for code, dt in ONNX_TO_NUMPY.items() if np.dtype(dt).name in NP_TO_DTYPE}
    vis = list(case.model.graph.input) + list(case.model.graph.output)
    return all(v.type.HasField("tensor_type") and v.type.tensor_type.elem_type in ok for v in vis)


def run_case(case, backend: str) -> str | None:
    """None when dlc reproduces every data set of the test; otherwise why not (one line)."""
    from onnx import numpy_helper

    from dlc.frontend.onnx import import_onnx
    from dlc.onnx_import import run_imported
    for inputs, expected in case.data_sets:
        inputs = [numpy_helper.to_array(v) if hasattr(v, "data_type") else v for v in inputs]
        expected = [numpy_helper.to_array(v) if hasattr(v, "data_type") else v for v in expected]
        names = [i.name for i in case.model.graph.input]
        feed = {n: np.asarray(v) for n, v in zip(names, inputs) if isinstance(v, (np.ndarray, np.generic))}
        if len(feed) != len(inputs):
            return "an input is a sequence or an optional, which dlc does not import"
        try:
            imp = import_onnx(case.model, input_values=feed)
            g = imp.graph
            run_feed = {v.name: feed[n] for n, v in _input_names(case, g)}
            outs = run_imported(imp, run_feed, backend)
        except DlcError as e:
            return e.message.splitlines()[0]
        except Exception as e:  # noqa: BLE001  (a backend bug: reported in the list, never hidden)
            return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        got = [outs[n] for n in g.output_names]
        if len(got) != len(expected):
            return f"{len(got)} outputs, expected {len(expected)}"
        for k, (a, b) in enumerate(zip(got, expected)):
            b = np.asarray(b)
            a = np.asarray(a)
            if a.shape != b.shape:
                return f"output {k} has shape {a.shape}, expected {b.shape}"
            if b.dtype.kind in "fc":
                ok = np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=case.rtol, atol=case.atol,
                                 equal_nan=True)
            else:
                ok = a.dtype.kind in "iub" and np.array_equal(a, b)
            if not ok:
                err = np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64))) if a.size else 0
                return f"output {k} differs from the expected values (max abs error {err:.3g}, dtype {a.dtype} vs {b.dtype})"
    return None


def _input_names(case, g):
    import re
    by_name = {re.sub(r"\W", "_", i.name) or "input": i.name for i in case.model.graph.input}
    return [(by_name[v.name], v) for v in g.inputs]


def category(why: str) -> str:
    """The kind of a failure, for the summary table of docs/onnx-import.md."""
    if "element type" in why:
        return "an element type dlc's IR lacks (int16, uint16/32/64, bfloat16, float8/4, int4/2, string)"
    if "is not supported by dlc's ONNX importer" in why:
        return "an op outside the converter table"
    if "sequence or an optional" in why or "Sequence" in why or "Optional" in why:
        return "sequence/optional values"
    if "must be known when the model is imported" in why:
        return "a shape computed at run time"
    if "training mode" in why:
        return "training-mode BatchNormalization/Dropout"
    if "is older than" in why or "at opset" in why:
        return "an opset older than the converter's range"
    if "differs" in why or "has shape" in why:
        return "numerical or shape mismatch"
    if "Error" in why.split(":")[0]:
        return "a backend error"
    return "an unsupported attribute or variant of a supported op"


def report(backend: str, names=None) -> dict:
    cases = all_cases()
    names = list(names or sorted(cases))
    fails = {}
    for n in names:
        r = run_case(cases[n], backend)
        if r is not None:
            fails[n] = r
    scope = [n for n in names if in_scope(cases[n])]
    typed = [n for n in scope if types_in_scope(cases[n])]
    return {"total": len(names), "passed": len(names) - len(fails), "in_scope": len(scope),
            "in_scope_passed": sum(1 for n in scope if n not in fails),
            "in_scope_types": len(typed), "in_scope_types_passed": sum(1 for n in typed if n not in fails),
            "failures": fails}


def write_expected(path: str, results: dict) -> None:
    """Write the expected-failure lists (backend -> {test: reason}) as a Python module."""
    from dlc.runtime.atomic import atomic_write
    lines = ['"""ONNX node tests dlc does not pass, per backend, each with its reason: the importer\'s or the',
             "backend's own message.  Generated by `python tests/onnx/node_harness.py --write NUMPY.json TORCH.json",
             'TVM.json` from the three sweeps\' JSON output (`node_harness.py numpy|torch|tvm`)."""', ""]
    # a failure with NumPy's reason is an importer failure, the same on every backend: torch and TVM name
    # those cases instead of repeating the reason, and list their own failures in full
    base = results.get("numpy", {})
    for backend in ("numpy", "torch", "tvm"):
        got = results.get(backend, {})
        same = sorted(k for k, v in got.items() if backend != "numpy" and base.get(k) == v)
        own = sorted((k, v) for k, v in got.items() if k not in same)
        if backend == "numpy":
            lines.append("NUMPY = {")
        elif len(same) == len(base):
            lines.append(f"{backend.upper()} = {{**NUMPY,")
        else:
            lines.append(f"_{backend.upper()}_AS_NUMPY = (")
            lines += [f"    {k!r}," for k in same]
            lines += [")", f"{backend.upper()} = {{**{{k: NUMPY[k] for k in _{backend.upper()}_AS_NUMPY}},"]
        lines += [f"    {k!r}: {v!r}," for k, v in own]
        lines += ["}", ""]
    atomic_write(path, "\n".join(lines).encode())


if __name__ == "__main__" and sys.argv[1:2] == ["--write"]:
    import json
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    res = {}
    for b, f in zip(("numpy", "torch", "tvm"), sys.argv[2:5]):
        with open(f) as fh:
            res[b] = json.load(fh)["failures"]
    write_expected(os.path.join(here, "node_expected_failures.py"), res)
elif __name__ == "__main__":
    import json
    r = report(sys.argv[1] if len(sys.argv) > 1 else "numpy", sys.argv[2:] or None)
    print(json.dumps(r, indent=1, sort_keys=True))
    from collections import Counter
    for kind, n in Counter(category(w) for w in r["failures"].values()).most_common():
        print(f"{n:5d}  {kind}", file=sys.stderr)
    print(f"{sys.argv[1:2]}: all {r['passed']}/{r['total']} = {100 * r['passed'] / r['total']:.1f}%, "
          f"in scope {r['in_scope_passed']}/{r['in_scope']} = {100 * r['in_scope_passed'] / max(r['in_scope'], 1):.1f}%, "
          f"in scope with dlc's dtypes {r['in_scope_types_passed']}/{r['in_scope_types']} = "
          f"{100 * r['in_scope_types_passed'] / max(r['in_scope_types'], 1):.1f}%",
          file=sys.stderr)
