"""metrics.jsonl logging (fsync'ed lines, resume truncation) and metric functions."""
import json
import math

import numpy as np
import pytest
from dlc.runtime.metrics import MetricsLog, accuracy, mae, mse, read_metrics

from dlc.errors import DlcError


def _lines(path):
    return path.read_text().splitlines()


def test_one_json_object_per_line(tmp_path):
    with MetricsLog(tmp_path) as log:
        assert log.path == tmp_path / "metrics.jsonl"
        log.append({"epoch": 0, "loss": np.float32(0.5), "val_accuracy": 0.9, "step": np.int64(45)})
        log.append({"epoch": 1, "loss": float("nan"), "lr": [1e-3, np.array(2e-3)]})
        # visible on disk at once (flushed), before close
        lines = _lines(log.path)
        assert len(lines) == 2
        assert json.loads(lines[0]) == {"epoch": 0, "loss": 0.5, "val_accuracy": 0.9, "step": 45}
        assert json.loads(lines[1]) == {"epoch": 1, "loss": None, "lr": [1e-3, 2e-3]}   # strict JSON
        assert log.records() == [json.loads(x) for x in lines]
    assert read_metrics(tmp_path) == read_metrics(tmp_path / "metrics.jsonl")


def test_explicit_file_and_fresh_start(tmp_path):
    f = tmp_path / "sub" / "run.jsonl"
    with MetricsLog(f) as log:
        log.append({"epoch": 0})
    with MetricsLog(f) as log:                      # a fresh run empties the old log
        assert log.records() == []
        log.append({"epoch": 0, "x": 1})
    assert read_metrics(f) == [{"epoch": 0, "x": 1}]


def test_resume_truncates_later_epochs(tmp_path):
    with MetricsLog(tmp_path) as log:
        log.append({"event": "start"})
        for e in range(6):
            log.append({"epoch": e, "step": 10 * e, "loss": 1.0 / (e + 1)})
            log.append({"epoch": e, "val_accuracy": 0.1 * e})
    with MetricsLog(tmp_path, resume_epoch=2) as log:  # the checkpoint of epoch 2 was resumed
        assert [r.get("epoch") for r in log.records()] == [None, 0, 0, 1, 1, 2, 2]
        log.append({"epoch": 3, "loss": 0.3})
        log.append({"epoch": 4, "loss": 0.2})
    recs = read_metrics(tmp_path)
    assert [r.get("epoch") for r in recs] == [None, 0, 0, 1, 1, 2, 2, 3, 4]
    assert recs[-2] == {"epoch": 3, "loss": 0.3}
    assert all(line.startswith("{") for line in _lines(tmp_path / "metrics.jsonl"))
    with MetricsLog(tmp_path, resume_epoch=10) as log:  # nothing beyond: keeps everything
        assert len(log.records()) == 9
    MetricsLog(tmp_path / "new", resume_epoch=3).close()   # resuming without a log starts one
    assert read_metrics(tmp_path / "new") == []


def test_torn_last_line_is_dropped_on_resume(tmp_path):
    f = tmp_path / "metrics.jsonl"
    f.write_text('{"epoch": 0, "loss": 1.0}\n{"epoch": 1, "loss": 0.5}\n{"epoch": 2, "lo')
    assert read_metrics(f) == [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}]
    with MetricsLog(f, resume_epoch=1) as log:
        log.append({"epoch": 2, "loss": 0.25})
    assert [json.loads(x) for x in _lines(f)] == [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5},
                                                   {"epoch": 2, "loss": 0.25}]


def test_truncate_after_on_an_open_log(tmp_path):
    with MetricsLog(tmp_path) as log:
        for e in range(4):
            log.append({"epoch": e})
        log.truncate_after(1)
        log.append({"epoch": 2, "again": True})
    assert read_metrics(tmp_path) == [{"epoch": 0}, {"epoch": 1}, {"epoch": 2, "again": True}]


def test_fsync_per_line(tmp_path, monkeypatch):
    import os
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    with MetricsLog(tmp_path) as log:
        n = len(calls)
        log.append({"epoch": 0})
        log.append({"epoch": 1})
        assert len(calls) == n + 2


# metric functions --------------------------------------------------------------------------
def test_accuracy_class_indices():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    assert accuracy(logits, np.array([0, 1, 2, 1])) == 0.75
    assert accuracy(logits, [0, 1, 2, 0]) == 1.0
    assert isinstance(accuracy(logits, np.array([0, 1, 2, 1])), float)


def test_accuracy_one_hot_binary_and_sequences():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert accuracy(logits, np.eye(2)[[0, 1, 1]]) == pytest.approx(2 / 3)
    assert accuracy(logits, np.eye(2, dtype=np.int64)[[0, 1, 1]]) == pytest.approx(2 / 3)
    assert accuracy(np.array([1.5, -0.2, 0.3, -2.0]), np.array([1, 0, 0, 0])) == 0.75   # one logit: > 0
    assert accuracy(np.array([[1.5], [-0.2]]), np.array([1, 1])) == 0.5
    seq = np.zeros((2, 3, 4))
    seq[..., 2] = 1.0
    assert accuracy(seq, np.array([[2, 2, 0], [2, 1, 2]])) == pytest.approx(4 / 6)   # f[N, T, V] vs [N, T]


def test_accuracy_errors_and_empty():
    with pytest.raises(DlcError):
        accuracy(np.zeros((4, 3)), np.zeros(5, np.int64))
    assert math.isnan(accuracy(np.zeros((0, 3)), np.zeros(0, np.int64)))


def test_mse_mae():
    p, t = np.array([1.0, 2.0, 4.0]), np.array([1.0, 0.0, 1.0])
    assert mse(p, t) == pytest.approx((0 + 4 + 9) / 3)
    assert mae(p, t) == pytest.approx((0 + 2 + 3) / 3)
    assert mse(p[:, None], t) == pytest.approx(13 / 3)          # f[N, 1] predictions vs [N] targets
