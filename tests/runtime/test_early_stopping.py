"""Early stopping on a validation metric."""
import json

import pytest
from dlc.runtime.early_stopping import EarlyStopping

from dlc.errors import DlcError


def _run(es, values):
    return [es.update(v) for v in values]


def test_max_mode_stops_after_patience_without_improvement():
    es = EarlyStopping(2, mode="max")
    assert _run(es, [0.5, 0.6, 0.6, 0.55]) == [False, False, False, True]
    assert es.best == 0.6 and es.best_index == 1 and es.stopped and es.bad_epochs == 2


def test_improvement_resets_the_count():
    es = EarlyStopping(2)
    assert _run(es, [0.5, 0.4, 0.7, 0.6, 0.65, 0.8]) == [False, False, False, False, True, False]
    assert es.best == 0.8 and es.improved and not es.stopped


def test_min_mode_and_improved_flag():
    es = EarlyStopping(3, mode="min")
    flags = []
    for v in [1.0, 0.8, 0.9, 0.7, 0.75, 0.71, 0.72]:
        stop = es.update(v)
        flags.append(es.improved)
    assert flags == [True, True, False, True, False, False, False]
    assert stop and es.best == 0.7 and es.best_index == 3


def test_min_delta_and_nan():
    es = EarlyStopping(2, mode="min", min_delta=0.1)
    assert _run(es, [1.0, 0.95, 0.92]) == [False, False, True]   # 0.95, 0.92 are not 0.1 better than 1.0
    es = EarlyStopping(1, mode="max")
    assert _run(es, [float("nan")]) == [True]                      # NaN never improves
    assert es.best is None
    es = EarlyStopping(2, mode="max")
    assert _run(es, [0.3, float("nan"), 0.4]) == [False, False, False] and es.best == 0.4


def test_patience_one():
    es = EarlyStopping(1, mode="min")
    assert _run(es, [3, 2, 2]) == [False, False, True]


def test_state_round_trip_through_json():
    es = EarlyStopping(3, mode="min", min_delta=0.01)
    _run(es, [1.0, 0.5, 0.6])
    d = json.loads(json.dumps(es.to_dict()))
    es2 = EarlyStopping.from_dict(d)
    assert es2.to_dict() == es.to_dict()
    # the restored stopper continues exactly like the original
    assert _run(es2, [0.7, 0.8]) == _run(es, [0.7, 0.8]) == [False, True]
    fresh = EarlyStopping.from_dict(EarlyStopping(4).to_dict())
    assert fresh.best is None and fresh.patience == 4 and fresh.mode == "max"


@pytest.mark.parametrize("kwargs", [{"patience": 0}, {"patience": -1}, {"patience": 2.5}, {"patience": True},
                                    {"patience": 2, "mode": "up"}, {"patience": 2, "min_delta": -1}])
def test_bad_arguments(kwargs):
    with pytest.raises(DlcError):
        EarlyStopping(**kwargs)
