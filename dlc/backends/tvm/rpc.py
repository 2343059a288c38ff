"""Run a compiled library on a TVM RPC server (an edge board, another host).

On the device:  python -m tvm.exec.rpc_server --host 0.0.0.0 --port 9091
Here:           dlc bench model.dlcpkg --rpc board:9091

The library is uploaded (`remote.upload`), loaded there
(`remote.load_module`) and driven by a relax VM whose device is the remote
one.  TVM's RPC cannot pass a list, which is what ``main_transform_params``
takes, so the weight transform (layout transposes, folded batch norm) runs
here, on a host build of the same model, and its results are uploaded: for
CPU targets the transform is the same computation on every llvm target.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DlcError
from ...runtime.package import Runner, example_inputs, host_arch, import_tvm, read_manifest
from ...runtime.pkgfile import PackageFile, private_dir

__all__ = ["parse_addr", "connect", "run_remote", "run_package_remote", "transformed_weights_here",
           "bench_compiled"]


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = str(addr).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise DlcError(f"'{addr}' is not an RPC address", hint="give HOST:PORT, e.g. --rpc 192.168.1.7:9091")
    return host, int(port)


def connect(addr: str, timeout: int = 60):
    host, port = parse_addr(addr)
    import_tvm()
    from tvm import rpc
    try:
        return rpc.connect(host, port, session_timeout=timeout)
    except Exception as e:  # noqa: BLE001 - TVM raises RuntimeError/TVMError/OSError
        msg = str(e).strip().splitlines()
        raise DlcError(f"cannot connect to the TVM RPC server at {host}:{port}: "
                       f"{msg[-1] if msg else type(e).__name__}",
                       hint="start one on the device: python -m tvm.exec.rpc_server --host 0.0.0.0 "
                            f"--port {port}") from None


def run_remote(addr: str, lib_path, signature: dict, weights: dict, inputs: dict, *, device: str = "cpu",
               transformed: list | None = None, repeat: int = 0, number: int = 1, warmup: int = 1,
               seed: int = 0, remote=None) -> tuple[dict, list[float]]:
    """Upload `lib_path`, run ``main`` once on `inputs` and, if `repeat`,
    time it there.  Returns (outputs, seconds per call).  `transformed`: the
    weights after ``main_transform_params`` (see `transformed_weights_here`)."""
    remote = remote or connect(addr)
    lib_path = Path(lib_path)
    import hashlib
    name = "dlc-" + hashlib.sha256(lib_path.read_bytes()).hexdigest()[:16] + lib_path.suffix
    try:
        remote.upload(str(lib_path), target=name)
        rlib = remote.load_module(name)
    except Exception as e:  # noqa: BLE001
        msg = str(e).strip().splitlines()
        raise DlcError(f"the RPC server could not load the library: {msg[-1] if msg else type(e).__name__}",
                       hint="was it compiled for that device's target? (dlc compile --target ...)") from None
    dev = remote.cpu() if device == "cpu" else remote.cuda()
    runner = Runner(rlib, signature, dev)
    if runner._has_transform:
        if transformed is None:
            raise DlcError("this library transforms its weights in main_transform_params, which TVM's RPC "
                           "cannot call, and this machine cannot run the package's own transform",
                           hint="bench the spec instead (dlc bench model.dln --target T --rpc HOST:PORT), "
                                "which computes the transform with a host build")
        runner.set_weights({}, transformed=transformed)
    else:
        runner.set_weights(weights)
    outs = runner.run(inputs, seed=seed)
    times = runner.time(inputs, repeat=repeat, number=number, seed=seed, warmup=warmup) if repeat else []
    return outs, times


def transformed_weights_here(executable, signature: dict, weights: dict) -> list[np.ndarray] | None:
    """``main_transform_params(weights)`` computed on this machine with a
    locally loadable build of the model; None when it has no transform."""
    tvm = import_tvm()
    r = Runner(executable, signature, tvm.cpu())
    if not r._has_transform:
        return None
    r.set_weights(weights)
    return r.transformed_weights()


def run_package_remote(addr: str, pkg_path, inputs: dict | None = None, *, repeat: int = 0, seed: int = 0,
                       host_twin=None) -> tuple[dict, list[float]]:
    """Run a `.dlcpkg` on an RPC server.  `host_twin`: a locally loadable
    executable of the same model (needed when the package's library is for
    another machine and lifts its weight transform)."""
    manifest = read_manifest(pkg_path)
    lib = manifest["library"]
    if lib.get("format") != "so":
        raise DlcError(f"{pkg_path} holds {lib.get('file')} (built without a cross compiler); the RPC server "
                       "needs a .so", hint="install gcc-aarch64-linux-gnu and recompile")
    sig = manifest["signature"]
    tmp = private_dir()
    try:
        with PackageFile(pkg_path) as pf:         # checked names, sizes and library sha256
            lib_path = pf.extract_library(tmp)
            weights = pf.read_weights() or {}
        inputs = dict(inputs or {}) or example_inputs(manifest, seed)
        transformed = None
        if sig.get("lifted_params", True):
            local = None
            if lib.get("arch") == host_arch() and lib.get("device") == "cpu":
                tvm = import_tvm()
                local = tvm.runtime.load_module(str(lib_path))
            elif host_twin is not None:
                local = host_twin
            if local is not None:
                transformed = transformed_weights_here(local, sig, weights)
        return run_remote(addr, lib_path, sig, weights, inputs, device=lib.get("device", "cpu"),
                          transformed=transformed, repeat=repeat, seed=seed)
    finally:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


def bench_compiled(graph, inputs: dict, weights: dict, *, target="cpu", arch=None, target_opts=(),
                   rpc_addr=None, repeat=20, warmup=3, seed=0) -> tuple[list[float], dict]:
    """`dlc bench --backend tvm` of a model's graph: compile it for `target`
    (cached) and time one forward pass, here or on an RPC server.  Returns
    (seconds per call, notes for the report)."""
    from .cache import compile_cached
    from .target import canonical_name, parse_options
    opts = parse_options(target_opts)
    cm, hit = compile_cached(graph, target, arch=arch, options=opts)
    info = {"where": canonical_name(target) or "cpu", "cache_hit": hit}
    if rpc_addr:
        info["where"] += f" via rpc {rpc_addr}"
        transformed = None
        if cm.signature.get("lifted_params", True):
            local = cm.executable if (cm.lib_info.get("arch") == host_arch()
                                      and cm.lib_info.get("device") == "cpu") else None
            if local is None and cm.target.get("kind") == "llvm":
                twin, _ = compile_cached(graph, "cpu")    # same weight transform on every llvm target
                local = twin.executable
            if local is not None:
                transformed = transformed_weights_here(local, cm.signature, weights)
        _, times = run_remote(rpc_addr, cm.lib_path, cm.signature, weights, inputs,
                              device=cm.lib_info.get("device", "cpu"), transformed=transformed,
                              repeat=repeat, warmup=warmup, seed=seed)
        return times, info
    if cm.lib_info.get("arch") != host_arch() or cm.lib_info.get("device") != "cpu":
        raise DlcError(f"target '{target}' does not run on this machine",
                       hint="bench it on the device: --rpc HOST:PORT")
    return cm.runner().set_weights(weights).time(inputs, repeat=repeat, warmup=warmup, seed=seed), info
