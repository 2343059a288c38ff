"""How long `dlc viz` takes on the big zoo graphs: building the DOT text
(elaborate, run the pipeline, write DOT) and graphviz's layout to SVG and PNG.

    python bench/bench_viz.py [--repeat 5] [--specs resnet50,bert_base]

Each figure is the median of `repeat` runs after one warm-up run; for dot,
the CPU seconds it used (user + system) are given beside the wall time, since
a shared machine's load inflates the wall time.
"""
from __future__ import annotations

import argparse
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_seconds(fn, repeat: int) -> tuple[float, float]:
    """(wall, CPU of child processes) medians in seconds."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime)
    return statistics.median(wall), statistics.median(cpu)


def cpu_model() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--specs", default="resnet50,bert_base")
    args = ap.parse_args()
    import dlc
    from dlc.viz import model_dot
    if shutil.which("dot") is None:
        sys.exit("graphviz's dot is not installed (apt-get install graphviz)")
    print(f"{cpu_model()}; load average {open('/proc/loadavg').read().split()[0]}")

    def dot(text, fmt):
        subprocess.run(["dot", f"-T{fmt}"], input=text.encode(), capture_output=True, check=True)

    for spec in args.specs.split(","):
        m = dlc.load(str(ROOT / "specs" / f"{spec}.dln"))
        for both in (False, True):
            text = model_dot(m, before_after=both)[0]
            build, _ = median_seconds(lambda: model_dot(m, before_after=both), args.repeat)
            svg, svg_cpu = median_seconds(lambda: dot(text, "svg"), args.repeat)
            png, png_cpu = median_seconds(lambda: dot(text, "png"), args.repeat)
            print(f"{spec:10s} {'before-after' if both else 'single':12s} DOT text {build * 1e3:5.0f} ms  "
                  f"dot -Tsvg {svg * 1e3:5.0f} ms ({svg_cpu * 1e3:4.0f} ms CPU)  "
                  f"dot -Tpng {png * 1e3:5.0f} ms ({png_cpu * 1e3:4.0f} ms CPU)")


if __name__ == "__main__":
    main()
