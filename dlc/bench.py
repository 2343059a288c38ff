"""`dlc bench`: median latency of one forward pass, on any backend.

A `.dln` model is timed by its backend (`Backend.bench`: the interpreter,
the generated nn.Module, or a TVM library here or on an RPC server); a
compiled `.dlcpkg` runs on the deploy runtime, or on an RPC server through
the tvm backend."""
from __future__ import annotations

import numpy as np

from .backends import get_backend


def bench(file, *, model=None, backend="tvm", target="cpu", arch=None, target_opts=(), bind=None,
          repeat=20, warmup=3, seed=0, rpc_addr=None, is_package=False, opt=None, weights=None) -> dict:
    """Median seconds of one forward pass after `warmup` calls.  Returns a JSON-able dict.
    `weights`: a .safetensors path (a dlc quantize artifact benchmarks the int8 model)."""
    bind = dict(bind or {})
    repeat = max(1, int(repeat))
    res = {"file": str(file), "backend": "tvm" if is_package else backend, "repeat": repeat, "warmup": warmup}
    if is_package:
        inputs, times = _bench_package(file, res, bind, repeat, warmup, seed, rpc_addr)
    else:
        from .api import load
        b = get_backend(backend)
        m = load(file, model, bind, opt=opt)
        res["model"] = m.name
        res["opt_level"] = m.opt.level
        inputs = m.random_inputs(seed, bind)
        if weights:
            from .quant_artifact import weights_for
            m, weights = weights_for(m, weights)
            res["int8"] = getattr(m.opt, "quant", None) is not None
        else:
            weights = m.init_weights(seed)
        # an int8 or --precision model runs its own graph: the module graph is the fp32 float model
        module_graph = m.module_graph() if b.uses_module_graph and m.opt.quant is None and m.opt.precision == "fp32" else None
        g = m.optimized(m.symbolic_graph("eval"), backend, target, bind)
        times, info = b.bench(g, inputs, weights, repeat=repeat, warmup=warmup, seed=seed,
                              module_graph=module_graph, target=target, arch=arch, target_opts=target_opts, rpc_addr=rpc_addr, bind=bind)
        res.update(info)
    res["dims"] = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in inputs.items())
    res["median_ms"] = float(np.median(times) * 1e3)
    res["min_ms"] = float(np.min(times) * 1e3)
    res["times_ms"] = [t * 1e3 for t in times]
    return res


def _bench_package(file, res, bind, repeat, warmup, seed, rpc_addr):
    from .runtime.package import example_inputs, load, read_manifest
    manifest = read_manifest(file)
    res["model"] = manifest.get("model", "?")
    inputs = example_inputs(manifest, seed, bind)
    where = manifest.get("target_name")
    res["where"] = f"{where} via rpc {rpc_addr}" if rpc_addr else where
    if rpc_addr:
        times = get_backend("tvm").bench_package_remote(file, inputs, rpc_addr=rpc_addr, repeat=repeat, seed=seed)
    else:
        pkg = load(file, manifest.get("library", {}).get("device", "cpu"))
        times = pkg.runner.time(inputs, repeat=repeat, warmup=warmup, seed=seed)
    return inputs, times
