"""dlc: a declarative deep-learning compiler.

>>> import dlc
>>> model = dlc.load("specs/mlp.dln")          # doctest: +SKIP
>>> model.run()["output"].shape                 # doctest: +SKIP
"""
__version__ = "0.1.0"

import os as _os


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

from .errors import DlcError  # noqa: E402


def load(path, name=None, bind=None):
    """Load a `.dln` model; see `dlc.api.Model`."""
    from .api import load as _load
    return _load(path, name, bind)


def train(path, **kwargs):
    """Train a `.dln` model as its train section declares; see `dlc.trainer.train`."""
    from .trainer import train as _train
    return _train(path, **kwargs)


__all__ = ["load", "train", "DlcError", "__version__"]
