"""The deploy runtime stands alone: `import dlc.runtime`, loading a package and
running it load no compiler, backend, frontend or API module (the layering
that `lint-imports` checks statically, checked here at run time).

One package is the MLP of the zoo; the other draws random tensors on the host
(randn, uniform), which the runtime must draw exactly as the NumPy reference
does, from `dlc.runtime.random` alone.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

import dlc  # noqa: E402
from dlc.backends.tvm import cache as tvm_cache  # noqa: E402
from dlc.backends.tvm.package import example_input_specs, source_hash, write_package  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
FORBIDDEN = ("dlc.compiler", "dlc.backends", "dlc.frontend", "dlc.api", "dlc.cli", "dlc.trainer")

NOISY = """
model Noisy(x: f32[N, 16]) -> f32[N, 8] {
    example N = 2
    h = dense(x, 8)
    return h + randn_like(h) * 0.5 + rand_like(h)
}
"""


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    d = tmp_path_factory.mktemp("runtime-imports")
    old = os.environ.get("DLC_CACHE_DIR")
    os.environ["DLC_CACHE_DIR"] = str(d / "cache")
    try:
        noisy = d / "noisy.dln"
        noisy.write_text(NOISY)
        out = {}
        for spec in (ROOT / "specs/mlp.dln", noisy):
            m = dlc.load(spec)
            cm, _ = tvm_cache.compile_cached(m.graph, "cpu")
            w = m.init_weights(0)
            path = d / f"{m.name}.dlcpkg"
            write_package(path, cm, w, source_hash=source_hash(spec), spec_path=str(spec), model_name=m.name,
                          target_name="cpu", example_inputs=example_input_specs(m._elaborate("eval")),
                          example_dims=dict(m.graph.dims))
            x = m.random_inputs(3, bind={"N": 3})
            name = m.graph.inputs[0].name
            np.save(d / f"{m.name}.x.npy", x[name])
            np.save(d / f"{m.name}.ref.npy", m.run(x, w, seed=5)["output"])   # the NumPy reference
            out[m.name] = (path, name)
        yield d, out
    finally:
        if old is None:
            os.environ.pop("DLC_CACHE_DIR", None)
        else:
            os.environ["DLC_CACHE_DIR"] = old


def test_running_a_package_loads_no_compiler_backend_frontend_or_api(packages):
    d, pkgs = packages
    code = f"""
import json, sys
import numpy as np
import dlc.runtime
res = {{}}
for model, (path, name) in {json.dumps({k: [str(p), n] for k, (p, n) in pkgs.items()})}.items():
    pkg = dlc.runtime.load(path)
    x = np.load({str(d)!r} + f"/{{model}}.x.npy")
    out = pkg.run({{name: x}}, seed=5)["output"]
    ref = np.load({str(d)!r} + f"/{{model}}.ref.npy")
    res[model] = [float(np.abs(out - ref).max()), float(np.abs(ref).max())]
res["loaded"] = sorted(k for k in sys.modules if k.startswith({FORBIDDEN!r}))
print(json.dumps(res))
"""
    env = dict(os.environ, TVM_NUM_THREADS="2")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=180)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["loaded"] == []
    for model in pkgs:
        err, scale = res[model]
        assert err <= 1e-4 * max(1.0, scale), (model, err)
