"""The background prefetch thread: order, overlap, errors and shutdown."""
import threading

import numpy as np
import pytest
from click.testing import CliRunner

from dlc.cli import main
from dlc.errors import DlcError
from dlc.runtime.data_prefetch import Prefetch


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "dlc-prefetch" and t.is_alive()]


def test_items_arrive_in_order_and_the_thread_ends():
    with Prefetch(iter(range(100)), depth=3) as stream:
        assert list(stream) == list(range(100))
    assert not _prefetch_threads()


def test_the_next_item_is_made_while_the_consumer_works():
    made = [threading.Event() for _ in range(3)]

    def items():
        for k in range(3):
            made[k].set()
            yield k
    with Prefetch(items(), depth=2) as stream:
        assert next(stream) == 0
        # the consumer holds item 0; the thread goes on to make item 1 meanwhile
        assert made[1].wait(timeout=10)
        assert list(stream) == [1, 2]


def test_a_dlc_error_in_the_thread_reaches_the_consumer_as_it_is():
    err = DlcError("cannot read rows from /data/big.npy: Input/output error")

    def items():
        yield 1
        yield 2
        raise err
    got = []
    with pytest.raises(DlcError) as e, Prefetch(items()) as stream:
        for x in stream:
            got.append(x)
    assert e.value is err and got == [1, 2]
    assert not _prefetch_threads()


def test_another_error_is_reported_naming_the_source():
    def items():
        yield 1
        raise ValueError("bad row")
    with pytest.raises(DlcError) as e, Prefetch(items(), source="/data/table.csv") as stream:
        list(stream)
    assert "/data/table.csv" in e.value.message and "ValueError: bad row" in e.value.message
    assert isinstance(e.value.__cause__, ValueError)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_leaving_early_stops_a_blocked_thread(exc):
    """The consumer stops (Ctrl-C, an error in the step) while the thread
    waits on a full queue: the thread ends and the source is closed."""
    closed = threading.Event()

    def items():
        try:
            for k in range(10**6):
                yield np.full(4, k)
        finally:
            closed.set()
    with pytest.raises(exc), Prefetch(items(), depth=2) as stream:
        for x in stream:
            if x[0] == 3:
                raise exc()
    assert not _prefetch_threads() and closed.is_set()


SPEC = """
model M(x: f32[N, 4]) -> f32[N, 2] {
    example N = 1
    output = dense(x, 2)
    return output
}

train M on npz {
    loss      = cross_entropy(output, label)
    epochs    = 2
    batch     = 4
    data      = "d.npz"
}
"""


def test_dlc_train_reports_an_error_from_the_loader_thread(tmp_path, monkeypatch):
    import dlc.runtime.data as data
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((20, 4)), label=rng.integers(0, 2, 20))
    (tmp_path / "m.dln").write_text(SPEC)
    real = data.batches
    where = []

    def failing(*a, **k):
        for i, b in enumerate(real(*a, **k)):
            if i == 2:
                where.append(threading.current_thread().name)
                raise DlcError(f"cannot read rows from {tmp_path / 'd.npz'}: device gone")
            yield b
    monkeypatch.setattr(data, "batches", failing)
    r = CliRunner().invoke(main, ["train", str(tmp_path / "m.dln"), "--out", str(tmp_path / "run"), "--no-progress"])
    assert r.exit_code != 0
    assert f"error: cannot read rows from {tmp_path / 'd.npz'}: device gone" in r.output and "Traceback" not in r.output
    assert where == ["dlc-prefetch"] and not _prefetch_threads()
