"""`dlc compile --target torch --script`: whether the generated module compiles
with `torch.jit.script`, and if not, why (TorchScript's own message, located
in the generated file)."""
from __future__ import annotations

import linecache
from itertools import count

_checked = count()


def script_check(source: str, cls: str) -> str | None:
    """None when an instance of class `cls` of `source` scripts; else the reason.

    TorchScript reads the methods' source text, so the file is registered with
    `linecache` under a name of its own (what `inspect.getsource` reads)."""
    import torch

    filename = f"<dlc-torch-script-check {next(_checked)}: {cls}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": f"dlc_script_check_{cls}"}
    try:
        exec(compile(source, filename, "exec"), namespace)  # noqa: S102 -- our own generated code
        module = namespace[cls]()
        torch.jit.script(module)
    except Exception as e:  # noqa: BLE001 -- any failure is the answer, reported to the user
        return _first_lines(f"{type(e).__name__}: {e}")
    finally:
        linecache.cache.pop(filename, None)
    return None


def _first_lines(text: str, n: int = 12) -> str:
    lines = [ln for ln in text.strip().split("\n")]
    return "\n".join(lines[:n]) + ("\n..." if len(lines) > n else "")
