"""Arrays that feed a model: lazily read rows and several named inputs.

`LazyRows` reads the rows a batch asks for from a (memory-mapped) array,
so a data set larger than RAM trains with only a batch in memory; shuffling
is by index.  `NamedInputs` holds one array per model input, indexed
together, so `batches()` and the trainer treat it like one array.

`load_named(path, inputs, ...)` reads both array stores: an `.npz` file (read
into memory) or a folder of `.npy` files (memory-mapped).  Either holds, for
each model input `NAME`, `NAME_train` and `NAME_val` or one `NAME` (then split
here with the seed), and the labels under the same rule as `label` (or `y`,
or the name the `label` option gives).  A one-input model may read `x`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DlcError, DlcValueError


class LazyRows:
    """Rows `index` (all when None) of `base`, read on demand; `transform`
    maps each batch read (e.g. uint8 pixels -> normalised float32).

    Indexing with an int array, a slice or an int reads just those rows, in
    ascending file order (then put back in the asked order), so a shuffled
    batch from a memory-mapped file costs one pass over the pages it needs."""

    def __init__(self, base, index=None, transform=None, source: str = "", dtype=None):
        self.base = base
        self.index = None if index is None else np.asarray(index, dtype=np.int64)
        self.transform = transform
        self.source = source
        self.dtype = np.dtype(dtype) if dtype is not None else base.dtype

    def __len__(self) -> int:
        return len(self.base) if self.index is None else len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self),) + tuple(self.base.shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def subset(self, index) -> LazyRows:
        """The rows `index` of these rows, still unread."""
        rows = np.asarray(index, dtype=np.int64)
        return LazyRows(self.base, rows if self.index is None else self.index[rows], self.transform,
                        self.source, self.dtype)

    def __getitem__(self, key) -> np.ndarray:
        single = isinstance(key, (int, np.integer))
        rows = np.arange(len(self))[key] if self.index is None else self.index[key]
        rows = np.atleast_1d(rows)
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows),) + tuple(self.base.shape[1:]), dtype=self.base.dtype)
        try:
            out[order] = self.base[rows[order]]
        except (OSError, ValueError) as e:     # a truncated or vanished file under the map
            raise DlcError(f"cannot read rows from {self.source}: {e}",
                           hint="the data file changed or is damaged; write it again") from None
        if self.transform is not None:
            out = self.transform(out)
        return out[0] if single else out

    def __array__(self, dtype=None, copy=None):
        a = self[:]
        return a if dtype is None else a.astype(dtype)

    def reshape(self, shape) -> np.ndarray:    # used where a whole set is reshaped; reads everything
        return self[:].reshape(shape)


class NamedInputs:
    """One array (or `LazyRows`) per model input, all with the same rows."""

    def __init__(self, arrays: dict, source: str = ""):
        lengths = {k: len(a) for k, a in arrays.items()}
        if len(set(lengths.values())) > 1:
            raise DlcValueError(f"{source}: the inputs have different numbers of rows: {lengths}", None,
                                "every input array needs one row per example")
        self.arrays = dict(arrays)
        self.source = source

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    @property
    def names(self) -> list[str]:
        return list(self.arrays)

    def __contains__(self, name) -> bool:
        return name in self.arrays

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.arrays[key]
        return NamedInputs({k: np.asarray(a[key]) for k, a in self.arrays.items()}, self.source)

    def subset(self, index) -> NamedInputs:
        return NamedInputs({k: _subset(a, index) for k, a in self.arrays.items()}, self.source)

    def __repr__(self) -> str:
        return "NamedInputs(" + ", ".join(f"{k}={tuple(a.shape)}" for k, a in self.arrays.items()) + ")"


def _subset(a, index):
    return a.subset(index) if isinstance(a, LazyRows) else a[index]


def split_index(n: int, split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, val rows): the seeded permutation the npz data set has
    always used; the first ceil(n * split) rows of it validate."""
    idx = np.random.default_rng(int(seed) % (1 << 64)).permutation(n)
    n_val = int(np.ceil(n * split))
    return idx[n_val:], idx[:n_val]


# ----------------------------------------------------------------- npz / npy stores
def open_store(path, mmap: bool) -> tuple[dict, str]:
    """{array name: array} of an .npz file (in memory) or a folder of .npy
    files (memory-mapped when `mmap`), never unpickled; and its description."""
    p = Path(path)
    if mmap:
        if not p.is_dir():
            raise DlcError(f"no such folder of .npy files: {p}",
                           hint="the npy data set reads a folder with one NAME.npy per input and label.npy")
        arrays = {}
        for f in sorted(p.glob("*.npy")):
            try:
                arrays[f.stem] = np.load(f, mmap_mode="r", allow_pickle=False)
            except Exception as e:
                raise DlcError(f"cannot read {f}: {e}", hint="save plain arrays with np.save") from None
        if not arrays:
            raise DlcError(f"{p} holds no .npy files", hint="save one NAME.npy per model input and label.npy")
        return arrays, str(p)
    try:
        with np.load(p, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}, str(p)
    except FileNotFoundError:
        raise DlcError(f"no such data file: {p}", hint="the npz data set reads a local .npz file") from None
    except Exception as e:  # bad zip, object arrays (pickle refused), ...
        raise DlcError(f"cannot read data from {p}: {e}",
                       hint="save plain arrays with np.savez(path, NAME=..., label=...)") from None


def _parts(arrays: dict, name: str):
    """(train, val) arrays stored as NAME_train/NAME_val, or (whole, None)
    for one NAME, or None."""
    if f"{name}_train" in arrays and f"{name}_val" in arrays:
        return arrays[f"{name}_train"], arrays[f"{name}_val"]
    if name in arrays:
        return arrays[name], None
    return None


def find_label(arrays: dict, label: str | None, where: str):
    names = [label] if label else ["label", "y"]
    for n in names:
        got = _parts(arrays, n)
        if got is not None:
            return n, got
    raise DlcValueError(f"{where} has no label array {' or '.join(repr(n) for n in names)}; it holds "
                        f"{sorted(arrays)}", None,
                        "store the labels as `label` (or label_train and label_val), or name them "
                        "with the label option")


def find_input(arrays: dict, name: str, single: bool, where: str):
    got = _parts(arrays, name)
    if got is None and single:
        got = _parts(arrays, "x")
    if got is None:
        raise DlcValueError(f"{where} has no array for the model input '{name}'; it holds {sorted(arrays)}",
                            None, f"store it as `{name}` (or {name}_train and {name}_val): npz and npy data "
                                  "feed the model's inputs by name")
    return got


def fit_rows(a, shape: tuple[int, ...], what: str):
    """`a` with each row reshaped to `shape` (a view for a memory map)."""
    if tuple(a.shape[1:]) == shape:
        return a
    if int(np.prod(a.shape[1:])) == int(np.prod(shape)):
        return a.reshape((len(a),) + shape)
    raise DlcValueError(f"{what} has rows of shape {tuple(a.shape[1:])}, the model input expects {shape}",
                        None, "store one row per example, shaped like the model input without the batch")
