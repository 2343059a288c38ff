"""dlc: a declarative deep-learning compiler.

>>> import dlc
>>> model = dlc.load("specs/mlp.dln")          # doctest: +SKIP
>>> model.run()["output"].shape                 # doctest: +SKIP
"""
import os as _os

from ._version import __version__


def _physical_cores() -> int:
    """Physical cores (not hyper-threads): distinct (package, core) pairs."""
    try:
        seen, phys = set(), None
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    seen.add((phys, line.split(":")[1].strip()))
        if seen:
            return len(seen)
    except OSError:
        pass
    return _os.cpu_count() or 1


# TVM's runtime defaults to one thread on some machines; give it the physical
# cores before anything imports tvm (an explicit setting wins)
_os.environ.setdefault("TVM_NUM_THREADS", str(_physical_cores()))

# The public names are loaded on first use (PEP 562): `import dlc.runtime`
# (the deploy runtime) or `import dlc.compiler` runs this file but loads no
# frontend, API, trainer or backend module.
_LAZY = {
    "load": ("api", "load"),          # dlc.load(path, name=None, bind=None) -> dlc.api.Model
    "Model": ("api", "Model"),
    "train": ("trainer", "train"),    # dlc.train(path, **options) -> dlc.trainer.TrainResult
    "DlcError": ("errors", "DlcError"),
    "quantize": ("quant_flow", "quantize"),  # dlc.quantize(path, weights, ...) -> dlc.quant_flow.QuantResult
    "verify": ("verify_core", "verify"),  # dlc.verify(model, ...) -> dlc.verify_core.VerifyReport
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module
        module, attr = _LAZY[name]
        value = import_module(f"{__name__}.{module}")
        value = getattr(value, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["load", "Model", "train", "quantize", "verify", "DlcError", "__version__"]
