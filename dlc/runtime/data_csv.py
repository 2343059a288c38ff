"""The `csv` data set: a table with a header line, feature columns and a
label column, named by the header.

- Numeric columns (every training value parses as a number) are
  standardised with the TRAINING split's mean and (population) std; a
  constant column is only centred.
- Other columns (or those the `categorical` option lists) are one-hot
  encoded, one feature per category seen in the training split, in sorted
  order.  A category the training split lacks is an error naming the line
  (`unknown = "error"`, the default) or encodes as all zeros
  (`unknown = "zeros"`).
- The label column: integers are class indices; other numbers make a
  regression target (f32); text labels are classes numbered in sorted order
  of the training split's labels.

The validation rows are the `split` fraction of the rows (the seeded
permutation of every data set here) or, with `val = "other.csv"`, a second
file with the same header.  Errors name the file and line.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..errors import DlcError, DlcNameError, DlcValueError
from .data_arrays import split_index

UNKNOWN = ("error", "zeros")


class _Table:
    """A CSV file's header and rows, each with its line number."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            with open(self.path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                self.header = [h.strip() for h in next(reader, [])]
                self.rows, self.lines = [], []
                for row in reader:
                    if not row or all(not c.strip() for c in row):
                        continue                       # blank lines carry no example
                    if len(row) != len(self.header):
                        raise DlcValueError(f"{self.path}:{reader.line_num}: the row has {len(row)} fields, "
                                            f"the header has {len(self.header)}", None,
                                            "every row needs one value per header column (quote values with commas)")
                    self.rows.append([c.strip() for c in row])
                    self.lines.append(reader.line_num)
        except FileNotFoundError:
            raise DlcError(f"no such CSV file: {self.path}") from None
        except (UnicodeDecodeError, csv.Error) as e:
            raise DlcError(f"cannot read {self.path}: {e}", hint="the csv data set reads UTF-8 text") from None
        self._check_header()

    def _check_header(self) -> None:
        if not self.header or all(not h for h in self.header):
            raise DlcValueError(f"{self.path} is empty", None, "the first line is a header naming the columns")
        if all(_number(h) is not None for h in self.header):
            raise DlcValueError(f"{self.path}:1 looks like data, not a header: {','.join(self.header)}", None,
                                "the first line must name the columns, e.g. `age,height,label`")
        dup = sorted({h for h in self.header if self.header.count(h) > 1})
        if dup:
            raise DlcValueError(f"{self.path}:1: the column {dup[0]!r} appears twice in the header")
        if not self.rows:
            raise DlcValueError(f"{self.path} has a header but no rows")

    def column(self, name: str) -> int:
        if name not in self.header:
            raise DlcNameError(f"{self.path} has no column {name!r}", None, "its columns: " + ", ".join(self.header))
        return self.header.index(name)


def _number(s: str):
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def load_csv(path, *, label="label", features=None, categorical=None, val=None, split=0.2, seed=0,
             unknown="error", num_classes=None):
    """The `Dataset` of a CSV file (see the module docstring)."""
    from .data import Dataset
    if unknown not in UNKNOWN:
        raise DlcValueError(f"csv unknown = {unknown!r}: it is \"error\" or \"zeros\"")
    table = _Table(path)
    if val is not None:
        vtable = _Table(val)
        if vtable.header != table.header:
            raise DlcValueError(f"{vtable.path}: the header differs from {table.path}'s", None,
                                "the validation file needs the same columns")
        train = [(table, i) for i in range(len(table.rows))]
        valid = [(vtable, i) for i in range(len(vtable.rows))]
    else:
        tr, va = split_index(len(table.rows), split, seed)
        train, valid = [(table, int(i)) for i in tr], [(table, int(i)) for i in va]
    lab = table.column(label)
    cols = [table.column(c) for c in features] if features else [j for j in range(len(table.header)) if j != lab]
    if lab in cols:
        raise DlcValueError(f"the label column {label!r} is also a feature", None, "remove it from features")
    forced = set(categorical or ())
    for c in forced:
        table.column(c)
    xt, xv, info = _features(table, cols, train, valid, forced, unknown)
    (yt, yv), task, classes, names = _labels(table, lab, train, valid, num_classes)
    info.update(path=str(table.path), label=label, class_names=names)
    return Dataset("csv", (xt, yt), (xv, yv), classes, (xt.shape[1],), task, info)


def _features(table, cols, train, valid, forced, unknown):
    blocks_t, blocks_v, names = [], [], []
    info = {"mean": {}, "std": {}, "categories": {}}
    for j in cols:
        name = table.header[j]
        values = [t.rows[i][j] for t, i in train]
        nums = None if name in forced else [_number(v) for v in values]
        if nums is not None and all(v is not None for v in nums):
            t = np.asarray(nums, dtype=np.float64)
            v = np.asarray([_parse(tb, i, j) for tb, i in valid], dtype=np.float64)
            mean, std = t.mean(), t.std()
            std = std if std > 0 else 1.0
            blocks_t.append(((t - mean) / std)[:, None])
            blocks_v.append(((v - mean) / std)[:, None])
            info["mean"][name], info["std"][name] = float(mean), float(std)
            names.append(name)
        else:
            cats = sorted(set(values))
            blocks_t.append(_one_hot(table, train, j, cats, "error"))
            blocks_v.append(_one_hot(table, valid, j, cats, unknown))
            info["categories"][name] = cats
            names += [f"{name}={c}" for c in cats]
    xt = np.concatenate(blocks_t, axis=1).astype(np.float32)
    xv = np.concatenate(blocks_v, axis=1).astype(np.float32) if valid else np.zeros((0, xt.shape[1]), np.float32)
    info["columns"] = names
    return xt, xv, info


def _parse(t: _Table, i: int, j: int) -> float:
    v = _number(t.rows[i][j])
    if v is None:
        raise DlcValueError(f"{t.path}:{t.lines[i]}: column {t.header[j]!r} is numeric in the training rows, "
                            f"got {t.rows[i][j]!r}", None, "missing or text values need a categorical column")
    return v


def _one_hot(table, rows, j: int, cats: list[str], unknown: str) -> np.ndarray:
    pos = {c: k for k, c in enumerate(cats)}
    out = np.zeros((len(rows), len(cats)), dtype=np.float32)
    for r, (t, i) in enumerate(rows):
        k = pos.get(t.rows[i][j])
        if k is None:
            if unknown == "zeros":
                continue
            raise DlcValueError(f"{t.path}:{t.lines[i]}: {t.header[j]} = {t.rows[i][j]!r} is a category the "
                                f"training rows lack (they have {cats})", None,
                                'set unknown = "zeros" to encode unseen categories as all zeros')
        out[r, k] = 1.0
    return out


def _labels(table, lab: int, train, valid, num_classes):
    """((train labels, val labels), task, number of classes, class names)."""
    values = [t.rows[i][lab] for t, i in train]
    nums = [_number(v) for v in values]
    if all(v is not None for v in nums):
        if all(float(v).is_integer() for v in nums):
            y = [np.asarray([_class_index(t, i, lab, num_classes) for t, i in part], np.int64)
                 for part in (train, valid)]
            k = int(max(a.max(initial=-1) for a in y)) + 1
            return tuple(y), "classification", max(k, num_classes or 0), None
        y = [np.asarray([_parse(t, i, lab) for t, i in part], np.float32) for part in (train, valid)]
        return tuple(y), "regression", None, None
    names = sorted(set(values))
    pos = {c: k for k, c in enumerate(names)}
    if num_classes is not None and len(names) > num_classes:
        raise DlcValueError(f"{table.path}: the label column has {len(names)} classes, the model outputs "
                            f"{num_classes}", None, "give the model one output per class")
    out = []
    for part in (train, valid):
        ys = []
        for t, i in part:
            if t.rows[i][lab] not in pos:
                raise DlcValueError(f"{t.path}:{t.lines[i]}: label {t.rows[i][lab]!r} is not a class of the "
                                    f"training rows ({names})")
            ys.append(pos[t.rows[i][lab]])
        out.append(np.asarray(ys, dtype=np.int64))
    return tuple(out), "classification", len(names), names


def _class_index(t: _Table, i: int, lab: int, num_classes) -> int:
    v = _number(t.rows[i][lab])
    if v is None or not float(v).is_integer():
        raise DlcValueError(f"{t.path}:{t.lines[i]}: label {t.rows[i][lab]!r} is not a class index")
    k = int(v)
    if k < 0 or (num_classes is not None and k >= num_classes):
        top = f"0..{num_classes - 1}, the model's {num_classes} classes" if num_classes else "0 or more"
        raise DlcValueError(f"{t.path}:{t.lines[i]}: label {k} is outside the class range {top}", None,
                            "class labels are indices from 0; fix the row or widen the model's output")
    return k
