"""`dlc bench --plot out.png`: the report as a bar chart, drawn with Pillow.

One group of bars per batch size (and per op shape for `--ops`), one bar per
runtime: the median time as a ratio to torch-eager's at the same batch (models)
or the share of the sgemm peak (ops).  Rows that were not timed (wrong,
unavailable, failed) are drawn as an empty slot with their status, so a
missing bar is never mistaken for a fast one.  Pillow is an optional
dependency (`pip install dlc[images]`); without it `--plot` is a clear error.
"""
from __future__ import annotations

from .errors import DlcError

_COLOURS = {"numpy": (120, 144, 156), "torch": (238, 76, 44), "tvm": (66, 133, 244), "torch-eager": (90, 90, 90),
            "torch-compile": (156, 39, 176), "onnxruntime": (46, 160, 67)}
_ROW_H, _GAP, _LEFT, _RIGHT, _TOP = 18, 10, 230, 200, 60
_WIDTH = 900


def plot_series(report: dict) -> tuple[str, list[tuple[str, list[tuple[str, float | None, str]]]]]:
    """(axis label, [(group label, [(runtime, value or None, note)])]) of a report."""
    if report["kind"] == "ops":
        groups: dict = {}
        for r in report["rows"]:
            key = f"{r['op']} {r['shape']}"
            v = r.get("peak_share")
            groups.setdefault(key, []).append((r["runtime"], v, r["status"] if v is None else
                                               f"{100 * v:.0f}%  {r['gflop_per_s']:.3g} GFLOP/s"))
        return "share of the sgemm peak", list(groups.items())
    groups = {}
    for r in report["rows"]:
        key = f"{r.get('mode', 'eval')} batch {r['batch']}"
        v = r.get("ratio_to_torch_eager")
        note = r["status"] if r["status"] != "ok" else (f"{v:.2f}x  {r['median_ms']:.3g} ms" if v is not None
                                                       else f"{r['median_ms']:.3g} ms")
        groups.setdefault(key, []).append((r["name"], v, note))
    return "time / torch-eager's (lower is faster)", list(groups.items())


def render_png(report: dict) -> bytes:
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise DlcError("--plot draws with Pillow, which is not installed",
                       hint="pip install 'dlc[images]' (or pillow), or leave --plot out") from None
    import io
    axis, groups = plot_series(report)
    n_rows = sum(len(bars) for _, bars in groups)
    height = _TOP + n_rows * _ROW_H + len(groups) * (_GAP + _ROW_H) + 30
    img = Image.new("RGB", (_WIDTH, height), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=12)
    title = report.get("model") or f"op suite {report.get('suite')}"
    cpu = report["machine"]["cpu"]
    d.text((10, 8), f"{title}: {axis}", fill="black", font=ImageFont.load_default(size=15))
    d.text((10, 30), f"{cpu['model']}, {report['threads']['threads']} threads, {report['machine']['date'][:16]}, "
                     f"median of {report['repeat']}", fill=(80, 80, 80), font=font)
    top = max((v for _, bars in groups for _, v, _ in bars if v is not None), default=1.0)
    scale = (_WIDTH - _LEFT - _RIGHT) / max(top, 1.0 if report["kind"] != "ops" else top)
    if report["kind"] != "ops":    # the torch-eager line at 1.0, under the bars
        d.line([_LEFT + int(scale), _TOP, _LEFT + int(scale), height - 30 - _GAP], fill=(0, 0, 0), width=1)
    y = _TOP
    for label, bars in groups:
        d.text((10, y), label, fill="black", font=font)
        y += _ROW_H
        for name, v, note in bars:
            d.text((30, y + 2), name, fill="black", font=font)
            if v is not None:
                d.rectangle([_LEFT, y + 2, _LEFT + max(1, int(v * scale)), y + _ROW_H - 3],
                            fill=_COLOURS.get(name, (0, 0, 0)))
            d.text((_LEFT + (int(v * scale) if v is not None else 0) + 6, y + 2), note, fill=(60, 60, 60), font=font)
            y += _ROW_H
        y += _GAP
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
