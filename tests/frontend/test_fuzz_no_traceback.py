"""Fuzzing the front end: a mutated zoo spec may be rejected, but only with a
located `DlcError`, never with a Python exception (KeyError, TypeError,
RecursionError, ...), the CLI's "internal error" path, or a hang.

Mutations (tests/spec_mutations.py) work on every `specs/*.dln` that exists
when the test runs, half of them on the token stream and lines (delete,
duplicate, swap or replace tokens and lines, change numbers, insert random
characters) and half on the grammar: whole statements and expressions, found
by parsing the spec, are deleted, moved, spliced in from other specs, wrapped
in nested compile-time loops, given extra arguments or huge numbers; hostile
imports, a BOM, CRLF line ends and runs of blank lines are added.

The property test is derandomized so that CI is stable; pass
`--hypothesis-seed=N` to explore other mutations, and set
DLC_FUZZ_EXAMPLES to run more (or fewer) than the default 500.  Each example
must finish within DLC_FUZZ_SECONDS (default 30) seconds of CPU time (not wall
time: the machine may be busy): a slower one is a hang.
tests/fuzz/run_long.py runs the same mutations for hours.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, seed as hyp_seed, settings
from hypothesis import strategies as st

from dlc.cli import main as cli_main
from dlc.errors import DlcError
from dlc.frontend.builtins import BUILTINS
from dlc.frontend.check import check_file
from dlc.frontend.modules import clear_cache
from spec_mutations import VOCAB as _VOCAB
from spec_mutations import mutate as _mutate
from spec_mutations import tokenize

ROOT = Path(__file__).resolve().parents[2]
SPECS_DIR = ROOT / "specs"
EXAMPLES = int(os.environ.get("DLC_FUZZ_EXAMPLES", "500"))
SECONDS_PER_EXAMPLE = float(os.environ.get("DLC_FUZZ_SECONDS", "30"))
# specs whose unmutated check takes longer than this are left out (keeps the run short)
MAX_SPEC_SECONDS = 0.5

# every function of the language: swapping one call for another exercises argument checks
VOCAB = _VOCAB + sorted(n for n in BUILTINS if n.isidentifier())


class DataChooser:
    """The `choice`/`randint` interface of `random.Random`, drawing from hypothesis."""

    def __init__(self, data):
        self.data = data

    def choice(self, seq):
        return self.data.draw(st.sampled_from(list(seq)))

    def randint(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))


def mutate(text: str, rnd, donors: list[str] | None = None) -> str:
    """Apply one random mutation; `rnd` (a `random.Random` or a `DataChooser`)
    makes every choice."""
    return _mutate(text, rnd, donors, vocab=VOCAB)


class Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise Hang(f"a mutant took more than {SECONDS_PER_EXAMPLE} s of CPU time to check")


# --------------------------------------------------------------------------- specs
def _spec_files() -> list[Path]:
    files = sorted(SPECS_DIR.glob("*.dln"))
    assert any(f.name == "lenet5.dln" for f in files), "the fuzzer needs at least specs/lenet5.dln"
    return files


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A copy of specs/ (with blocks/ for relative imports) to write mutants into."""
    d = tmp_path_factory.mktemp("fuzz") / "specs"
    shutil.copytree(SPECS_DIR, d)
    return d


@pytest.fixture(scope="module")
def corpus(workdir) -> dict[str, str]:
    """name -> text of every spec small enough to elaborate quickly."""
    out = {}
    for f in _spec_files():
        text = f.read_text(encoding="utf-8")
        clear_cache()
        t0 = time.perf_counter()
        try:
            check_file(str(workdir / f.name))
        except DlcError:
            pass  # a spec someone is still writing: its mutants are still fair game
        if time.perf_counter() - t0 <= MAX_SPEC_SECONDS or f.name == "lenet5.dln":
            out[f.name] = text
    return out


def _check_mutant(workdir: Path, name: str, text: str) -> DlcError | None:
    """Run `check_file` on a mutant; a DlcError is fine, anything else (and a
    check slower than SECONDS_PER_EXAMPLE) fails the test."""
    path = workdir / f"_mutant_{name}"
    path.write_text(text, encoding="utf-8", newline="")
    clear_cache()
    old = signal.signal(signal.SIGPROF, _on_alarm)
    signal.setitimer(signal.ITIMER_PROF, SECONDS_PER_EXAMPLE)
    try:
        check_file(str(path))
    except DlcError as e:
        rendered = e.render()
        assert "Traceback" not in rendered
        if e.span is not None:
            assert rendered.startswith(f"{e.span.file}:{e.span.line}:{e.span.col}: error: "), rendered
        return e
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)
        path.unlink()
    return None


def test_tokenizer_round_trips():
    for f in _spec_files():
        text = f.read_text(encoding="utf-8")
        assert "".join(tokenize(text)) == text


def test_unmutated_lenet_checks(workdir):
    clear_cache()
    check_file(str(workdir / "lenet5.dln"))


def test_mutations_raise_only_dlc_errors(request, workdir, corpus, monkeypatch):
    """The property: every mutant either checks or raises a DlcError."""
    # mutants that loop 10**5 times reach the work limit; a lower one reaches it sooner
    # and keeps the run short (tests/fuzz/run_long.py keeps the real limit)
    from dlc.frontend import elaborate
    monkeypatch.setattr(elaborate, "MAX_STEPS", 200_000)
    names = sorted(corpus)
    forced = request.config.getoption("hypothesis_seed", default=None)
    stats = {"errors": 0, "ok": 0, "unlocated": [], "no_hint": [], "slowest": 0.0}
    donors = [corpus[n] for n in names]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=forced is None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.data())
    def prop(data):
        name = data.draw(st.sampled_from(names), label="spec")
        text = corpus[name]
        rnd = DataChooser(data)
        for _ in range(data.draw(st.integers(1, 3), label="mutations")):
            text = mutate(text, rnd, donors)
        t0 = time.process_time()
        err = _check_mutant(workdir, name, text)
        stats["slowest"] = max(stats["slowest"], time.process_time() - t0)
        if err is None:
            stats["ok"] += 1
        else:
            stats["errors"] += 1
            if err.span is None:
                stats["unlocated"].append(err.message)
            if not err.hint:
                stats["no_hint"].append(err.render())

    if forced is not None:
        prop = hyp_seed(int(forced))(prop)
    t0 = time.perf_counter()
    prop()
    elapsed = time.perf_counter() - t0
    print(f"\nfuzz: {stats['ok'] + stats['errors']} mutants in {elapsed:.1f}s, "
          f"{stats['errors']} rejected with a DlcError, slowest {stats['slowest']:.2f} s CPU")
    assert stats["ok"] + stats["errors"] >= EXAMPLES
    # an error about a spec's text must say where it is, and what to do about it
    assert not stats["unlocated"], stats["unlocated"]
    assert not stats["no_hint"], "\n\n".join(stats["no_hint"])


# Hand-picked mutations run through the CLI: exit code 1 with a rendered error,
# never the internal-error path (exit code 3).
CLI_MUTANTS = [
    ("lenet5.dln", "conv2d(image, 6, kernel=5)", "conv2d(image, 0, kernel=5)"),
    ("lenet5.dln", "dense(s4, 120)", "dense(s4, 120.5)"),
    ("lenet5.dln", "dense(f6, 10)", "dense(f6, 100000000000000)"),
    ("lenet5.dln", "f32[N, 1, 32, 32]", "f32[N, 1, 32, -32]"),
    ("lenet5.dln", "avgpool2d(c3, 2)", "avgpool2d(c3, 2"),
    ("lenet5.dln", "return output", "return outptu"),
    ("lenet5.dln", "epochs    = 20", "epochs    = -20"),
    ("lenet5.dln", "adam(lr=1e-3", "adam(lrate=1e-3"),
    ("lenet5.dln", "|> tanh", "|> tanh(("),
    ("lenet5.dln", "avgpool2d(c1, 2)", "avgpool2d(c1, \"2)"),
    ("lenet5.dln", "dense(f5, 84)", "dense(f5, 84) |> dense(10, 3)"),
]


@pytest.mark.parametrize("spec,old,new", CLI_MUTANTS, ids=[f"{s}:{n}" for s, _, n in CLI_MUTANTS])
def test_cli_mutants_exit_1_with_rendered_error(workdir, spec, old, new):
    text = (SPECS_DIR / spec).read_text(encoding="utf-8")
    assert old in text
    path = workdir / f"_cli_{spec}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    clear_cache()
    try:
        res = CliRunner().invoke(cli_main, ["check", str(path)])
    finally:
        path.unlink()
    out = res.output if res.stderr_bytes is None else res.stderr
    assert res.exit_code == 1, (res.exit_code, out, res.exception)
    assert "internal error" not in out and "Traceback" not in out
    assert re.match(re.escape(str(path)) + r":\d+:\d+: error: ", out), out
    assert "\nhint: " in out, out


def test_cli_random_mutants_never_internal_error(workdir, corpus):
    """A handful of seeded random mutants through the CLI."""
    import random
    rng = random.Random(1234)
    for k in range(8):
        name = "lenet5.dln" if k % 2 == 0 else rng.choice(sorted(corpus))
        text = mutate(corpus[name], rng, list(corpus.values()))
        path = workdir / f"_cli_rand{k}_{name}"
        path.write_text(text, encoding="utf-8")
        clear_cache()
        try:
            res = CliRunner().invoke(cli_main, ["check", str(path)])
        finally:
            path.unlink()
        assert res.exit_code in (0, 1), (text, res.output, res.exception)
        assert "internal error" not in res.output and "Traceback" not in res.output
