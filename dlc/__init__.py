"""dlc: a declarative deep-learning compiler.

>>> import dlc
>>> model = dlc.load("specs/mlp.dln")          # doctest: +SKIP
>>> model.run()["output"].shape                 # doctest: +SKIP
"""
__version__ = "0.1.0"

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
