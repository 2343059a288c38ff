"""The aarch64 cross compiler for the TVM tests: installed when it is
missing and this machine can (root and apt-get), else its tests skip and say
why."""
from __future__ import annotations

import os
import shutil
import subprocess

CROSS = "aarch64-linux-gnu-gcc"
_tried = False


def ensure_cross_compiler() -> str | None:
    """The cross compiler's path, installing Debian's gcc-aarch64-linux-gnu
    once per session if possible; None when unavailable."""
    global _tried
    if shutil.which(CROSS) is None and not _tried:
        _tried = True
        if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for cmd in (["apt-get", "install", "-y", "-q", "gcc-aarch64-linux-gnu"],
                        ["apt-get", "update", "-q"],
                        ["apt-get", "install", "-y", "-q", "gcc-aarch64-linux-gnu"]):
                try:
                    subprocess.run(cmd, env=env, capture_output=True, timeout=600, check=False)
                except (OSError, subprocess.TimeoutExpired):
                    break
                if shutil.which(CROSS):
                    break
    return shutil.which(CROSS)


CROSS_REASON = f"no {CROSS} and it could not be installed (apt-get install -y gcc-aarch64-linux-gnu)"
