"""Data sets read from a user's files, fitted to a model's inputs.

    ds = open_dataset("image_folder", path="photos/", inputs=[("image", (3, 32, 32), "float32")],
                      options={"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})

`open_dataset` is what `dlc train` calls for every data set: the bundled
ones (`runtime.data.load_dataset`) and the file sources below, whose options
`SOURCES` lists with their defaults (a train section writes them as
`data = csv("table.csv", label="species")`, the command line as
`--data csv --data-path table.csv --data-option label=species`).

    image_folder   one sub-folder per class (`data_images`)
    csv            a table with a header (`data_csv`)
    npz            an .npz with one array per model input, by name, and `label`
    npy            a folder of .npy files, as npz, memory-mapped (data larger than RAM)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DlcNameError, DlcValueError
from .data_arrays import (
    LazyRows,
    NamedInputs,
    find_input,
    find_label,
    fit_rows,
    open_store,
    split_index,
)

# the options of each file source and their defaults; `path` is the first positional argument
SOURCES = {
    "image_folder": {"path": None, "size": None, "mean": None, "std": None, "val": None, "split": 0.2,
                     "cache": None},
    "csv": {"path": None, "label": "label", "features": None, "categorical": None, "val": None, "split": 0.2,
            "unknown": "error"},
    "npz": {"path": None, "label": None, "split": 0.2},
    "npy": {"path": None, "label": None, "split": 0.2},
}


def open_dataset(name: str, *, inputs, path=None, options: dict | None = None, num_classes: int | None = None,
                 seed: int = 0, progress: bool = False):
    """The data set `name` fitted to the model's `inputs` ([(name, per-example
    shape, dtype)]); `num_classes` (the model's, for class-index labels) bounds
    the labels; `progress` shows the first pass over image files."""
    from .data import DATASETS, load_dataset
    opts = dict(options or {})
    if name not in SOURCES:
        if name not in DATASETS:
            raise DlcNameError(f"unknown data set '{name}'", None,
                               "data sets: " + ", ".join(sorted(set(DATASETS) | set(SOURCES))))
        if opts:
            raise DlcValueError(f"the {name} data set takes no options, got {sorted(opts)}")
        shape = tuple(inputs[0][1])
        ds = load_dataset(name, seed=seed, path=path, input_shape=shape).reshaped(shape)
        return _checked(ds, num_classes)
    unknown = sorted(set(opts) - set(SOURCES[name]))
    if unknown:
        raise DlcNameError(f"{name} has no option '{unknown[0]}'", None,
                           f"its options: {', '.join(SOURCES[name])}")
    opts = {**SOURCES[name], **opts}
    if path is not None:
        opts["path"] = path
    if opts["path"] is None:
        raise DlcValueError(f"the {name} data set needs a path", None,
                            f'write `data = {name}("...")` in the train section or pass --data-path')
    split = float(opts["split"])
    if not 0.0 < split < 1.0:
        raise DlcValueError(f"the validation split must be between 0 and 1, got {split}", None,
                            "write e.g. split=0.2")
    if name == "image_folder":
        ds = _image_folder(opts, inputs, seed, progress)
    elif name == "csv":
        ds = _csv(opts, inputs, seed, num_classes)
    else:
        ds = load_named(opts["path"], inputs, label=opts["label"], split=split, seed=seed, mmap=name == "npy")
    return _checked(ds, num_classes)


# ------------------------------------------------------------------ sources
def _image_folder(opts, inputs, seed: int, progress: bool):
    from .data import Dataset
    from .data_images import image_rows, load_pixels
    iname, shape, _ = _one_input(inputs, "image_folder")
    if len(shape) != 3:
        raise DlcValueError(f"image_folder feeds images [C, H, W]; the model input '{iname}' has rows {shape}",
                            None, "declare the input as f32[N, 3, H, W] (or 1 channel)")
    size = opts["size"] if opts["size"] is not None else shape[1:]
    size = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(d) for d in size)
    if size != tuple(shape[1:]):
        raise DlcValueError(f"image_folder size {size} differs from the model input's {tuple(shape[1:])}", None,
                            "drop `size` (the input's height and width are the default) or bind the model to it")
    def load(root):
        return load_pixels(root, channels=shape[0], size=size, cache_dir=opts["cache"], progress=progress)

    def rows(px, idx, src):
        return image_rows(px, idx, opts["mean"], opts["std"], src)
    pixels, labels, classes, npy = load(opts["path"])
    if opts["val"] is not None:
        vpx, vlab, vclasses, vnpy = load(opts["val"])
        if vclasses != classes:
            raise DlcValueError(f"the validation folder {opts['val']} has classes {vclasses}, "
                                f"the training folder {classes}", None, "both need the same class sub-folders")
        train, val = (rows(pixels, None, str(npy)), labels), (rows(vpx, None, str(vnpy)), vlab)
    else:
        tr, va = split_index(len(labels), float(opts["split"]), seed)
        train, val = (rows(pixels, tr, str(npy)), labels[tr]), (rows(pixels, va, str(npy)), labels[va])
    return Dataset("image_folder", train, val, len(classes), tuple(shape), "classification",
                   {"path": str(opts["path"]), "classes": classes, "cache": str(npy)})


def _csv(opts, inputs, seed: int, num_classes):
    from .data_csv import load_csv
    iname, shape, _ = _one_input(inputs, "csv")
    features = opts["features"]
    ds = load_csv(opts["path"], label=opts["label"], features=[features] if isinstance(features, str) else features,
                  categorical=[opts["categorical"]] if isinstance(opts["categorical"], str) else opts["categorical"],
                  val=opts["val"], split=float(opts["split"]), seed=seed, unknown=opts["unknown"],
                  num_classes=num_classes)
    if int(np.prod(shape)) != ds.input_shape[0]:
        raise DlcValueError(f"{opts['path']} gives {ds.input_shape[0]} features ({', '.join(ds.info['columns'])}), "
                            f"the model input '{iname}' takes {shape}", None,
                            "size the model input to the features (one-hot columns count one per category)")
    return ds.reshaped(shape)


def load_named(path, inputs, *, label=None, split: float = 0.2, seed: int = 0, mmap: bool = False):
    """npz (`mmap` False) or a folder of .npy files (`mmap` True): each model
    input fed from the array of its name (see `data_arrays`)."""
    from .data import Dataset, _f32, _fit, _labels
    arrays, where = open_store(path, mmap)
    lname, (yt, yv) = find_label(arrays, label, where)
    parts = {n: find_input(arrays, n, len(inputs) == 1, where) for n, _, _ in inputs}
    whole = [n for n, (_, v) in parts.items() if v is None]
    if whole and (len(whole) != len(parts) or yv is not None):
        raise DlcValueError(f"{where} splits some arrays into _train/_val and not others", None,
                            "store every input and the label either whole or as NAME_train and NAME_val")
    shapes = {n: tuple(s) for n, s, _ in inputs}

    def rows(a, n, part):
        if not mmap:        # in memory: as the one-input npz always was (f32, small images zero-padded)
            try:
                return _fit(_f32(a), shapes[n], n)
            except DlcValueError:
                pass        # fit_rows says which file and array
        a = fit_rows(a, shapes[n], f"{where}: {n}{part}")
        return LazyRows(a, source=f"{Path(where) / (n + part + '.npy')}")
    train = {n: rows(t, n, "" if v is None else "_train") for n, (t, v) in parts.items()}
    if whole:
        yall = _labels(np.asarray(yt))
        tr, va = split_index(len(yall), split, seed)
        val = {n: _take(a, va) for n, a in train.items()}
        train = {n: _take(a, tr) for n, a in train.items()}
        yt, yv = yall[tr], yall[va]
    else:
        val = {n: rows(v, n, "_val") for n, (_, v) in parts.items()}
        yt, yv = _labels(np.asarray(yt)), _labels(np.asarray(yv))
    for part, xs, y in (("train", train, yt), ("val", val, yv)):
        for n, a in xs.items():
            if len(a) != len(y):
                raise DlcValueError(f"{where}: input '{n}' has {len(a)} {part} rows but the labels have {len(y)}")
    if yt.dtype.kind in "iu":
        task, classes = "classification", int(max(yt.max(initial=0), yv.max(initial=0))) + 1
    else:
        task, classes = "regression", None
    one = len(inputs) == 1
    xt = train[inputs[0][0]] if one else NamedInputs(train, where)
    xv = val[inputs[0][0]] if one else NamedInputs(val, where)
    name = "npy" if mmap else "npz"
    return Dataset(name, (xt, yt), (xv, yv), classes, shapes[inputs[0][0]], task,
                   {"path": where, "label": lname, "inputs": shapes})


def _take(a, index):
    return a.subset(index) if isinstance(a, LazyRows) else a[index]


def _one_input(inputs, source: str):
    if len(inputs) != 1:
        raise DlcValueError(f"{source} feeds one model input; the model has {len(inputs)}: "
                            f"{', '.join(n for n, _, _ in inputs)}", None,
                            "use npz or npy data for a model with several inputs")
    name, shape, dtype = inputs[0]
    return name, tuple(int(d) for d in shape), dtype


def _checked(ds, num_classes):
    """`ds`, after checking its class labels fit the model's `num_classes`."""
    if num_classes is None or ds.task != "classification":
        return ds
    where = ds.info.get("path", ds.name)
    if ds.name == "image_folder" and ds.num_classes > num_classes:
        raise DlcValueError(f"{where} has {ds.num_classes} classes ({', '.join(ds.info['classes'])}), the model "
                            f"outputs {num_classes}", None, "give the model one output per class folder")
    for part, (_, y) in (("train", ds.train), ("val", ds.val)):
        flat = np.asarray(y).reshape(len(y), -1)
        bad = np.flatnonzero(((flat < 0) | (flat >= num_classes)).any(axis=1))
        if len(bad):
            i = int(bad[0])
            value = int(flat[i][(flat[i] < 0) | (flat[i] >= num_classes)][0])
            raise DlcValueError(f"{where}: label {value} (example {i} of the {part} split) is outside the "
                                f"model's {num_classes} classes 0..{num_classes - 1}", None,
                                "class labels are indices from 0; widen the model's output or fix the labels")
    return ds
