"""A long fuzzing campaign over spec text: mutate the zoo specs (token-level
and grammar-aware, tests/spec_mutations.py), run `check_file` on each mutant,
and count the outcomes.

    nice -n 19 .venv/bin/python tests/fuzz/run_long.py --count 100000 --workers 2 --out fuzz-out

Every outcome must be success or a located `DlcError`.  Anything else is
recorded: an internal error (any other exception, MemoryError included: each
worker runs under an address-space limit, --memory-gib), a hang (a check that
uses more than --seconds of CPU time; CPU, not wall time, because the run is
meant to go on at nice 19 on a busy machine) or an unlocated error.  Each such mutant is saved
under --out with what happened, and --out/summary.json is rewritten as the
run goes: inputs tried, outcomes, the slowest check, and the peak resident
memory of any worker.  Example i is mutated from random.Random(seed * 10**9 + i),
whatever the number of workers, so a run is reproducible given its corpus
(the zoo specs whose own check takes at most --max-spec-seconds of CPU; the
summary lists them).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from multiprocessing import Pool
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE.parents[1]))  # tests/: spec_mutations

_STATE: dict = {}


class Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise Hang()


def _init(memory_gib: float, seconds: float, max_spec_seconds: float) -> None:
    """Per worker: a private copy of specs/ (imports resolve inside it), the
    corpus of quick specs, and a memory ceiling."""
    if memory_gib > 0:
        lim = int(memory_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    from dlc.errors import DlcError
    from dlc.frontend.check import check_file
    from dlc.frontend.modules import clear_cache
    work = Path(tempfile.mkdtemp(prefix="dlc-fuzz-")) / "specs"
    shutil.copytree(ROOT / "specs", work)
    corpus = {}
    for f in sorted((ROOT / "specs").glob("*.dln")):
        clear_cache()
        t0 = time.process_time()
        try:
            check_file(str(work / f.name))
        except DlcError:
            pass
        if time.process_time() - t0 <= max_spec_seconds:
            corpus[f.name] = f.read_text(encoding="utf-8")
    signal.signal(signal.SIGPROF, _on_alarm)
    _STATE.update(work=work, corpus=corpus, names=sorted(corpus), donors=[corpus[n] for n in sorted(corpus)],
                  seconds=seconds)


def _one(i: int, seed: int) -> tuple[str, dict | None, float]:
    """(outcome, details for a finding, seconds) of example i."""
    from dlc.errors import DlcError
    from dlc.frontend.check import check_file
    from dlc.frontend.modules import clear_cache
    from spec_mutations import mutate
    rnd = random.Random(seed * 10**9 + i)
    name = rnd.choice(_STATE["names"])
    text = _STATE["corpus"][name]
    for _ in range(rnd.randint(1, 3)):
        text = mutate(text, rnd, _STATE["donors"])
    path = _STATE["work"] / f"_mutant_{os.getpid()}_{name}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass", newline="")
    clear_cache()
    t0 = time.process_time()
    signal.setitimer(signal.ITIMER_PROF, _STATE["seconds"])
    try:
        check_file(str(path))
        outcome, info = "ok", None
    except DlcError as e:
        if e.span is None and "larger than" not in e.message:
            outcome, info = "unlocated", {"error": e.render()}
        else:
            outcome, info = "dlc_error", None
    except Hang:
        outcome, info = "hang", {"error": f"no result after {_STATE['seconds']} s of CPU time"}
    except BaseException as e:  # noqa: BLE001 - everything else is a finding
        if isinstance(e, KeyboardInterrupt):
            raise
        outcome, info = "internal", {"error": f"{type(e).__name__}: {str(e)[:500]}",
                                     "traceback": traceback.format_exc()[-3000:]}
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        path.unlink(missing_ok=True)
    if info is not None:
        info.update(index=i, spec=name, text=text)
    return outcome, info, time.process_time() - t0


def _chunk(args: tuple[int, int, int]) -> dict:
    start, stop, seed = args
    out = {"counts": {}, "findings": [], "slowest": 0.0, "slowest_index": None, "n": 0}
    for i in range(start, stop):
        outcome, info, dt = _one(i, seed)
        out["counts"][outcome] = out["counts"].get(outcome, 0) + 1
        out["n"] += 1
        if dt > out["slowest"]:
            out["slowest"], out["slowest_index"] = dt, i
        if info is not None:
            out["findings"].append({"outcome": outcome, **info})
    out["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["corpus"] = _STATE["names"]
    return out


def _write_summary(out_dir: Path, summary: dict) -> None:
    tmp = out_dir / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out_dir / "summary.json")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100_000, help="mutants to check")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=30.0, help="a check using more CPU seconds is a hang")
    ap.add_argument("--memory-gib", type=float, default=3.0, help="address-space limit per worker (0: none)")
    ap.add_argument("--max-spec-seconds", type=float, default=0.5,
                    help="zoo specs whose own check is slower are left out of the corpus")
    ap.add_argument("--chunk", type=int, default=250)
    ap.add_argument("--out", type=Path, default=Path("fuzz-out"))
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    summary = {"command": " ".join(sys.argv), "seed": a.seed, "target": a.count, "tried": 0, "counts": {},
               "findings": 0, "slowest_cpu_s": 0.0, "slowest_index": None, "peak_worker_rss_mib": 0.0,
               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))}
    chunks = [(s, min(s + a.chunk, a.count), a.seed) for s in range(0, a.count, a.chunk)]
    with Pool(a.workers, _init, (a.memory_gib, a.seconds, a.max_spec_seconds), maxtasksperchild=40) as pool:
        for res in pool.imap_unordered(_chunk, chunks):
            summary["tried"] += res["n"]
            summary["corpus"] = res["corpus"]
            for k, v in res["counts"].items():
                summary["counts"][k] = summary["counts"].get(k, 0) + v
            if res["slowest"] > summary["slowest_cpu_s"]:
                summary["slowest_cpu_s"], summary["slowest_index"] = round(res["slowest"], 3), res["slowest_index"]
            summary["peak_worker_rss_mib"] = round(max(summary["peak_worker_rss_mib"], res["max_rss_mib"]), 1)
            for f in res["findings"]:
                summary["findings"] += 1
                (a.out / f"{f['outcome']}-{f['index']}.json").write_text(json.dumps(f, indent=2))
            summary["elapsed_s"] = round(time.time() - t0, 1)
            summary["rate_per_s"] = round(summary["tried"] / max(summary["elapsed_s"], 1e-9), 2)
            _write_summary(a.out, summary)
            print(f"[{summary['elapsed_s']:8.0f}s] {summary['tried']:7d}/{a.count} tried  {summary['counts']}  "
                  f"slowest {summary['slowest_cpu_s']:.2f} s CPU  rss {summary['peak_worker_rss_mib']:.0f} MiB", flush=True)
    bad = sum(summary["counts"].get(k, 0) for k in ("internal", "hang", "unlocated"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
