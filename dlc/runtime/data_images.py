"""The `image_folder` data set: one sub-folder per class, as torchvision's
`ImageFolder` reads it.

    root/cat/001.png
    root/cat/002.jpg
    root/dog/a/003.jpeg          (files below a class folder, at any depth)

Classes are the sub-folder names sorted (class index = position), files are
found by a sorted walk with torchvision's extensions (case-insensitive).
Each image is decoded with Pillow, converted to "L" (one channel) or "RGB"
(three) as the model's input has, and resized to the input's height and
width with bilinear resampling: `img.resize((W, H), Image.BILINEAR)`, which
is what torchvision's `Resize((H, W))` does to a PIL image.

The first pass decodes every image into a uint8 [N, C, H, W] array stored as
a `.npy` file in the cache folder, under a key made of the files' relative
paths, modification times and sizes and the settings (mode, size,
resampling); later runs memory-map it.  Normalisation, (x / 255 - mean) / std
as `ToTensor` + `Normalize`, is applied per batch, so changing mean or std
reuses the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import DlcError, DlcValueError
from .atomic import atomic_write
from .data_arrays import LazyRows

# torchvision.datasets.folder.IMG_EXTENSIONS
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CACHE_VERSION = 1
RESAMPLE = "bilinear"


def default_cache_dir() -> Path:
    """``$DLC_CACHE_DIR/data`` (default ``~/.cache/dlc/data``), beside the TVM cache."""
    d = os.environ.get("DLC_CACHE_DIR")
    return (Path(d).expanduser() if d else Path.home() / ".cache" / "dlc") / "data"


def scan(root) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(file, class index)]) of an image folder, in torchvision's order."""
    root = Path(root)
    if not root.is_dir():
        raise DlcError(f"no such image folder: {root}", hint="image_folder reads a folder with one sub-folder per class")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise DlcValueError(f"{root} has no class sub-folders", None,
                            "put each class's images in its own sub-folder: root/cat/1.png, root/dog/2.png")
    files: list[tuple[Path, int]] = []
    for k, c in enumerate(classes):
        found = []
        for dirpath, _, names in sorted(os.walk(root / c, followlinks=True)):
            found += [Path(dirpath) / n for n in sorted(names) if n.lower().endswith(IMG_EXTENSIONS)]
        if not found:
            raise DlcValueError(f"the class folder {root / c} holds no images", None,
                                "image files end in " + ", ".join(IMG_EXTENSIONS) + "; remove the empty folder")
        files += [(f, k) for f in found]
    return classes, files


def cache_key(root: Path, files, mode: str, size: tuple[int, int]) -> str:
    """A hash of what the cached pixels depend on: each file's path, mtime and
    size, and the decoding settings."""
    h = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "mode": mode, "size": list(size),
                                   "resample": RESAMPLE}).encode())
    for f, k in files:
        st = f.stat()
        h.update(f"{f.relative_to(root).as_posix()}\0{st.st_mtime_ns}\0{st.st_size}\0{k}\n".encode())
    return h.hexdigest()[:32]


def load_pixels(root, *, channels: int, size: tuple[int, int], cache_dir=None, progress: bool = False):
    """(uint8 pixels [N, C, H, W] memory-mapped from the cache, int64 labels,
    class names, the cache file).  Decodes (and caches) on the first call."""
    root = Path(root)
    mode = {1: "L", 3: "RGB"}.get(int(channels))
    if mode is None:
        raise DlcValueError(f"image_folder feeds 1 (grey) or 3 (RGB) channels; the model input has {channels}",
                            None, "declare the input as f32[N, 1, H, W] or f32[N, 3, H, W]")
    classes, files = scan(root)
    labels = np.array([k for _, k in files], dtype=np.int64)
    cdir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = cache_key(root, files, mode, size)
    npy, meta = cdir / f"images-{key}.npy", cdir / f"images-{key}.json"
    if not (npy.is_file() and meta.is_file()):
        _decode_all(files, mode, size, npy, root, progress)
        atomic_write(meta, json.dumps({"root": str(root), "classes": classes, "n": len(files), "mode": mode,
                                       "size": list(size), "resample": RESAMPLE}).encode(), private=True)
    pixels = np.load(npy, mmap_mode="r")
    if pixels.shape != (len(files), len(mode), size[0], size[1]):
        raise DlcError(f"the image cache {npy} does not match {root}", hint=f"delete {npy} and run again")
    return pixels, labels, classes, npy


def _decode_all(files, mode: str, size, npy: Path, root: Path, progress: bool) -> None:
    """Decode every image into a temporary .npy beside `npy`, then rename it."""
    from .progress import LoadProgress
    npy.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{npy.name}.", suffix=".tmp", dir=npy.parent)
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                        shape=(len(files), len(mode), size[0], size[1]))
        workers = max(1, min(4, os.cpu_count() or 1))
        with LoadProgress(len(files), f"decoding {root}", enabled=progress) as bar, \
                ThreadPoolExecutor(workers) as pool:     # Pillow releases the GIL while it decodes
            for start in range(0, len(files), 256):      # a chunk at a time: bounded memory
                chunk = files[start:start + 256]
                for j, img in enumerate(pool.map(lambda fk: decode(fk[0], mode, size), chunk)):
                    out[start + j] = img
                    bar.advance()
        out.flush()
        del out
        os.replace(tmp, npy)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def decode(path: Path, mode: str, size) -> np.ndarray:
    """One image as uint8 [C, H, W]: decoded, converted to `mode`, resized bilinearly."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im.load()                   # decode now, so a truncated file fails here, named
            im = im.convert(mode).resize((int(size[1]), int(size[0])), Image.BILINEAR)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DlcError(f"cannot read image {path}: {e}", hint="remove or replace the damaged file") from None
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def normaliser(mean, std, channels: int):
    """The per-batch transform uint8 [B, C, H, W] -> float32 (x / 255 - mean) / std."""
    m = _per_channel(mean, 0.0, channels, "mean")
    s = _per_channel(std, 1.0, channels, "std")
    if np.any(s <= 0):
        raise DlcValueError(f"image_folder std must be positive, got {list(s.ravel())}", None, "e.g. std = [0.5]")

    def transform(x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32) / np.float32(255.0) - m) / s
    return transform


def _per_channel(v, default: float, channels: int, what: str) -> np.ndarray:
    vals = [default] if v is None else (list(v) if isinstance(v, (list, tuple)) else [v])
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels:
        raise DlcValueError(f"image_folder {what} has {len(vals)} values for {channels} channels", None,
                            f"give one {what} per channel (or one for all)")
    return np.asarray(vals, dtype=np.float32).reshape(1, channels, 1, 1)


def image_rows(pixels, index, mean, std, source: str) -> LazyRows:
    return LazyRows(pixels, index, normaliser(mean, std, pixels.shape[1]), source, np.float32)
