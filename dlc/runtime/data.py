"""Training data: bundled real data sets (no downloads), seeded batches and
image augmentations.

    ds = load_dataset("digits")                # ds.train == (x, y), ds.val == (x, y)
    for xb, yb in batches(*ds.train, 64, shuffle=True, seed=0, epoch=3):
        ...

Data sets (the names a `train M on <name>` section may use):

    digits         scikit-learn 8x8 digits, pixels / 16, x f32[N, 64]
    digits_rows    the same split as rows: x f32[N, 8, 8] (8 steps of 8 pixels)
    digits_images  the same split as images: x f32[N, 1, 8, 8] (for CNNs)
    iris, wine, breast_cancer
                   scikit-learn tables standardised with the train split's mean/std
    npz            a local .npz with x_train, y_train, x_val, y_val (or x, y,
                   split here with the seed); never unpickled
    synthetic      seeded Gaussian classes (or a linear regression) of any shape

`dlc train` opens every data set through `data_sources.open_dataset`, which
adds the file sources image_folder, csv, npy and npz by input name
(docs/data.md).

The scikit-learn sets come with scikit-learn (`pip install scikit-learn`),
which is only needed for them.  Labels are int64 class indices; inputs are
float32 (npz integer inputs, e.g. token ids, keep their integer type).

Shuffling and augmentation draw from `np.random.default_rng([seed, epoch, ...])`,
so a run resumed at epoch k sees exactly the batches it would have seen.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DlcError, DlcNameError, DlcValueError

SKLEARN_SETS = ("digits", "digits_rows", "digits_images", "iris", "wine", "breast_cancer")
DATASETS = SKLEARN_SETS + ("npz", "synthetic")


@dataclass
class Dataset:
    """A train/validation split plus what a trainer needs to know about it."""

    name: str
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    num_classes: int | None          # None for regression targets
    input_shape: tuple[int, ...]     # one example's shape, without the batch dimension
    task: str = "classification"     # or "regression"
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.train[0])}, val={len(self.val[0])}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes})")

    def reshaped(self, input_shape) -> Dataset:
        """The same data fitted to a model's per-example input shape: a plain
        reshape when the sizes agree (f32[N, 64] <-> f32[N, 8, 8]), else
        images are zero-padded about the centre (digits 8x8 -> LeNet's 32x32)."""
        shape = tuple(int(d) for d in input_shape)
        if shape == self.input_shape:
            return self
        train = (_fit(self.train[0], shape, self.name), self.train[1])
        val = (_fit(self.val[0], shape, self.name), self.val[1])
        return Dataset(self.name, train, val, self.num_classes, shape, self.task, dict(self.info))


def load_dataset(name: str, *, seed: int = 0, split: float = 0.2, path=None,
                 input_shape=None, num_classes: int | None = None, task: str = "classification",
                 size: int = 512) -> Dataset:
    """Load a named data set split into train and validation parts.

    `split` is the validation fraction (scikit-learn's `test_size`) and `seed`
    the split's `random_state`; the defaults give digits 1437/360.  `path` is
    the .npz file for `npz`.  `input_shape`, `num_classes`, `task` and `size`
    shape the `synthetic` set.
    """
    if name not in DATASETS:
        raise DlcNameError(f"unknown data set '{name}'", None, "data sets: " + ", ".join(DATASETS))
    if not 0.0 < float(split) < 1.0:
        raise DlcValueError(f"the validation split must be between 0 and 1, got {split}", None,
                            "write e.g. `split = 0.2`")
    if name == "npz":
        return _load_npz(path, seed, split)
    if name == "synthetic":
        return _synthetic(seed, split, input_shape, num_classes, task, size)
    return _load_sklearn(name, seed, split)


# scikit-learn sets --------------------------------------------------------------
def _load_sklearn(name: str, seed: int, split: float) -> Dataset:
    try:
        import sklearn.datasets as skd
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise DlcError(f"the '{name}' data set needs scikit-learn",
                       hint="pip install scikit-learn  (or: pip install 'dlc[test]')") from None
    base = name.split("_")[0] if name.startswith("digits") else name
    bunch = getattr(skd, f"load_{base}")()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    xt, xv, yt, yv = train_test_split(x, y, test_size=split, random_state=int(seed) % (1 << 32))
    if base == "digits":
        xt, xv = xt / 16.0, xv / 16.0
        shape = {"digits": (64,), "digits_rows": (8, 8), "digits_images": (1, 8, 8)}[name]
    else:
        mean, std = xt.mean(axis=0), xt.std(axis=0)
        std[std == 0] = 1.0
        xt, xv = (xt - mean) / std, (xv - mean) / std
        shape = (x.shape[1],)
    xt = xt.astype(np.float32).reshape((-1,) + shape)
    xv = xv.astype(np.float32).reshape((-1,) + shape)
    return Dataset(name, (xt, yt), (xv, yv), int(y.max()) + 1, shape,
                   info={"source": f"sklearn.datasets.load_{base}"})


# local .npz files -----------------------------------------------------------------
def _load_npz(path, seed: int, split: float) -> Dataset:
    if path is None:
        raise DlcValueError("the npz data set needs a file", None, 'add `data = "path/to/data.npz"`')
    try:
        with np.load(Path(path), allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise DlcError(f"no such data file: {path}", hint="the npz data set reads a local .npz file") from None
    except Exception as e:  # bad zip, object arrays (pickle refused), ...
        raise DlcError(f"cannot read data from {path}: {e}",
                       hint="save plain arrays with np.savez(path, x_train=..., y_train=..., x_val=..., y_val=...)") from None
    if {"x_train", "y_train", "x_val", "y_val"} <= arrays.keys():
        xt, yt, xv, yv = (arrays[k] for k in ("x_train", "y_train", "x_val", "y_val"))
    elif {"x", "y"} <= arrays.keys():
        x, y = arrays["x"], arrays["y"]
        if len(x) != len(y):
            raise DlcValueError(f"{path}: x has {len(x)} rows but y has {len(y)}")
        idx = np.random.default_rng(_seed(seed)).permutation(len(x))
        n_val = int(np.ceil(len(x) * split))
        xt, yt, xv, yv = x[idx[n_val:]], y[idx[n_val:]], x[idx[:n_val]], y[idx[:n_val]]
    else:
        raise DlcValueError(f"{path} holds {sorted(arrays)}", None,
                            "an npz data set has x_train, y_train, x_val, y_val (or x and y)")
    for a, b, part in ((xt, yt, "train"), (xv, yv, "val")):
        if len(a) != len(b):
            raise DlcValueError(f"{path}: x_{part} has {len(a)} rows but y_{part} has {len(b)}")
    xt, xv, yt, yv = _f32(xt), _f32(xv), _labels(yt), _labels(yv)
    if yt.dtype.kind in "iu":
        task, classes = "classification", int(max(yt.max(initial=0), yv.max(initial=0))) + 1
    else:
        task, classes = "regression", None
    return Dataset("npz", (xt, yt), (xv, yv), classes, tuple(xt.shape[1:]), task, {"path": str(path)})


def _f32(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) if a.dtype.kind == "f" else a


def _labels(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iub":
        return a.astype(np.int64)
    return a.astype(np.float32)


# synthetic ------------------------------------------------------------------------
def _synthetic(seed: int, split: float, input_shape, num_classes, task: str, size: int) -> Dataset:
    """Classes: Gaussian blobs around seeded per-class means (learnable, not
    trivial).  Regression: y = x . w + noise, y f32[N]."""
    shape = tuple(int(d) for d in (input_shape if input_shape is not None else (16,)))
    if task not in ("classification", "regression"):
        raise DlcValueError(f"unknown task '{task}'", None, 'task is "classification" or "regression"')
    rng = np.random.default_rng([_seed(seed), 7])
    n = int(size)
    x = rng.standard_normal((n,) + shape).astype(np.float32)
    if task == "classification":
        k = int(num_classes or 4)
        means = rng.standard_normal((k,) + shape).astype(np.float32)
        y = rng.integers(0, k, size=n).astype(np.int64)
        x = x + 1.5 * means[y]
    else:
        k = None
        w = rng.standard_normal(int(np.prod(shape))) / np.sqrt(np.prod(shape))
        y = (x.reshape(n, -1) @ w + 0.1 * rng.standard_normal(n)).astype(np.float32)
    n_val = int(np.ceil(n * split))
    return Dataset("synthetic", (x[n_val:], y[n_val:]), (x[:n_val], y[:n_val]), k, shape, task,
                   {"seed": seed})


# batching -------------------------------------------------------------------------
def batches(x: np.ndarray, y: np.ndarray, batch: int, *, shuffle: bool, seed: int, epoch: int,
            drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (x, y) minibatches for one epoch.

    The order is `np.random.default_rng([seed, epoch]).permutation(n)`: it
    depends only on (seed, epoch), so resuming at epoch k reproduces the
    batches of an uninterrupted run.  `drop_last` skips a short final batch.
    """
    n = len(x)
    if len(y) != n:
        raise DlcValueError(f"x has {n} rows but y has {len(y)}")
    if batch <= 0:
        raise DlcValueError(f"batch must be positive, got {batch}")
    order = np.random.default_rng([_seed(seed), int(epoch)]).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch if drop_last else n
    for i in range(0, stop, batch):
        idx = order[i:i + batch]
        yield x[idx], y[idx]


def num_batches(n: int, batch: int, drop_last: bool = False) -> int:
    return n // batch if drop_last else -(-n // batch)


def epoch_rng(seed: int, epoch: int, stream: int = 1) -> np.random.Generator:
    """A generator for per-epoch randomness other than the shuffle (e.g.
    augmentation: stream 1), reproducible on resume like `batches`."""
    return np.random.default_rng([_seed(seed), int(epoch), int(stream)])


# augmentation (N, C, H, W) ----------------------------------------------------------
def random_crop(images: np.ndarray, size, padding: int = 0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Zero-pad H and W by `padding`, then cut a random `size` (int or (h, w))
    window from each image independently."""
    images = _check_images(images, "random_crop")
    rng = rng if rng is not None else np.random.default_rng()
    h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    p = int(padding)
    if p < 0:
        raise DlcValueError(f"random_crop padding must be >= 0, got {padding}")
    if p:
        images = np.pad(images, ((0, 0), (0, 0), (p, p), (p, p)))
    n, _, H, W = images.shape
    if not (0 < h <= H and 0 < w <= W):
        raise DlcValueError(f"random_crop size {(h, w)} does not fit padded images of {H}x{W}",
                            None, "the crop size must be at most the image size + 2 * padding")
    top = rng.integers(0, H - h + 1, size=n)
    left = rng.integers(0, W - w + 1, size=n)
    rows = (top[:, None] + np.arange(h))[:, None, :, None]      # (n, 1, h, 1)
    cols = (left[:, None] + np.arange(w))[:, None, None, :]     # (n, 1, 1, w)
    return images[np.arange(n)[:, None, None, None], np.arange(images.shape[1])[None, :, None, None], rows, cols]


def hflip(images: np.ndarray, p: float = 0.5, rng: np.random.Generator | None = None) -> np.ndarray:
    """Mirror each image left-right with probability `p` (a new array)."""
    images = _check_images(images, "hflip")
    if not 0.0 <= p <= 1.0:
        raise DlcValueError(f"hflip probability must be between 0 and 1, got {p}")
    rng = rng if rng is not None else np.random.default_rng()
    flip = rng.random(len(images)) < p
    out = images.copy()
    out[flip] = images[flip][..., ::-1]
    return out


AUGMENTATIONS = {"random_crop": random_crop, "hflip": hflip}


def augment(images: np.ndarray, specs, rng: np.random.Generator) -> np.ndarray:
    """Apply `[(name, kwargs), ...]` (the train section's `augment` list) in order."""
    from .data_arrays import NamedInputs
    if isinstance(images, NamedInputs):
        raise DlcValueError(f"augment works on a one-input image data set; this one feeds {images.names}", None,
                            "drop `augment`, or augment the arrays before saving them")
    for name, kwargs in specs:
        if name not in AUGMENTATIONS:
            raise DlcNameError(f"unknown augmentation '{name}'", None, "augmentations: " + ", ".join(AUGMENTATIONS))
        images = AUGMENTATIONS[name](images, rng=rng, **kwargs)
    return images


# helpers -------------------------------------------------------------------------------
def _check_images(images, what: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise DlcValueError(f"{what} works on image batches f32[N, C, H, W], got shape {images.shape}",
                            None, "use the digits_images data set or reshape the inputs to (N, C, H, W)")
    return images


def _seed(seed: int) -> int:
    """SeedSequence wants non-negative entropy; a train section's seed may be negative."""
    return int(seed) % (1 << 64)


def _fit(x: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    n = len(x)
    if int(np.prod(x.shape[1:])) == int(np.prod(shape)):
        return x.reshape((n,) + shape)
    src = x.shape[1:]
    if len(src) == 2 and len(shape) == 3:
        src, x = (1,) + src, x.reshape((n, 1) + src)
    if len(src) == 3 and len(shape) == 3 and src[0] == shape[0] and src[1] <= shape[1] and src[2] <= shape[2]:
        dh, dw = shape[1] - src[1], shape[2] - src[2]
        return np.pad(x, ((0, 0), (0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)))
    if src == (64,) and len(shape) == 3 and shape[0] == 1:   # flat digits -> images
        return _fit(x.reshape(n, 1, 8, 8), shape, name)
    raise DlcValueError(f"the {name} examples have shape {tuple(x.shape[1:])}, the model expects {shape}",
                        None, "pick a data set whose examples match the model's input")
