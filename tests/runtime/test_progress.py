"""The training progress display: live on a terminal, one line per epoch otherwise."""
import io

from dlc.runtime.progress import TrainProgress
from rich.console import Console


def _run(progress, epochs=3, steps=4):
    with progress as p:
        for e in range(progress.start_epoch, epochs):
            for s in range(steps):
                p.update(e, s + 1, loss=1.0 / (e + 1), lr=0.01, samples=32)
            p.end_epoch(e, {"val_accuracy": 0.5 + 0.1 * e})


def test_no_tty_prints_one_line_per_epoch():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=200)
    p = TrainProgress(3, 4, console=console)
    assert not p.live
    _run(p)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("epoch 1/3  loss 1.0000  lr 0.01  val_accuracy 0.5000")
    assert "samples/s" in lines[0] and "left" in lines[0]
    assert lines[2].startswith("epoch 3/3  loss 0.3333") and "left" not in lines[2]
    assert "\x1b[" not in buf.getvalue()                       # no escape codes in CI logs


def test_disabled_prints_nothing():
    buf = io.StringIO()
    _run(TrainProgress(2, 3, enabled=False, console=Console(file=buf, force_terminal=True)))
    _run(TrainProgress(2, 3, enabled=False, console=Console(file=buf)))
    assert buf.getvalue() == ""


def test_live_terminal_display_runs_and_keeps_epoch_lines():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=160)
    p = TrainProgress(2, 5, console=console)
    assert p.live
    _run(p, epochs=2, steps=5)
    out = buf.getvalue()
    assert "epoch 1/2" in out and "epoch 2/2" in out and "samples/s" in out
    with TrainProgress(2, 5, console=console) as p:
        p.update(0, 3, loss=1.0, samples=8)
        task = p._progress.tasks[0]
        assert task.completed == 3 and task.total == 5 and task.fields["epoch"] == "1/2"
        p.end_epoch(0)
        assert p._progress.tasks[0].completed == 0 and p._progress.tasks[0].fields["epoch"] == "2/2"


def test_time_left_estimate():
    p = TrainProgress(4, 10, console=Console(file=io.StringIO()))
    p._t0 -= 10.0                                             # pretend 10 s have passed
    p.update(0, 10, samples=1)                                # a quarter of the run in 10 s
    assert 29.0 < p._left(0) < 31.0


def test_end_epoch_returns_the_summary_and_resume_numbering():
    buf = io.StringIO()
    p = TrainProgress(10, 2, start_epoch=7, console=Console(file=buf))
    with p:
        p.update(7, 1, loss=2.0, samples=10)
        p.update(7, 2, loss=4.0, samples=30)                  # sample-weighted mean: 3.5
        line = p.end_epoch(7, {"acc": 0.25, "note": "best"})
    assert line.startswith("epoch 8/10  loss 3.5000  acc 0.2500  note best")
    assert buf.getvalue().strip() == line
