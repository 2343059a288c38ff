"""Where `import "..."` looks: next to the importing file, the zoo, a search path.

* `import "zoo:blocks/resnet_blocks.dln"` names a file of dlc's model zoo (the
  `specs/` folder of the checkout dlc runs from, or the folder `DLC_ZOO` names).
* Any other path is first taken relative to the importing file, as before;
  when no such file exists there, each folder of the search path is tried in
  order: the `include` folders given to `dlc.load(..., include=[...])`, then
  the folders of the `DLC_PATH` environment variable (separated by `:`, `;` on
  Windows).  `dlc --include DIR ...` prepends DIR to `DLC_PATH`, so a training
  run that starts a worker process sees the same path.

The folders on the search path and the zoo are trusted as the project folder
is: an import may read a `.dln` file inside any of them and nowhere else.
"""
from __future__ import annotations

import os
from pathlib import Path

ZOO_PREFIX = "zoo:"


def zoo_root() -> Path | None:
    """The zoo's folder, or None when this installation has none."""
    env = os.environ.get("DLC_ZOO")
    if env:
        p = Path(env)
        return p.resolve() if p.is_dir() else None
    here = Path(__file__).resolve().parents[2] / "specs"
    return here if here.is_dir() else None


def env_path() -> tuple[str, ...]:
    """The folders `DLC_PATH` lists (empty entries ignored)."""
    return tuple(p for p in os.environ.get("DLC_PATH", "").split(os.pathsep) if p)


def search_dirs(include: tuple[str, ...]) -> list[Path]:
    """The existing folders of the search path, in the order they are tried."""
    out: list[Path] = []
    for d in tuple(include) + env_path():
        try:
            p = Path(d).expanduser().resolve()
        except (OSError, RuntimeError, ValueError):
            continue
        if p.is_dir() and p not in out:
            out.append(p)
    return out


def trusted_roots(project: Path, include: tuple[str, ...]) -> list[Path]:
    """The folders an import may read from."""
    roots = [project] + search_dirs(include)
    zoo = zoo_root()
    if zoo is not None:
        roots.append(zoo)
    return roots


def candidates(importer: Path, path: str, include: tuple[str, ...]) -> tuple[list[Path], str]:
    """The paths to try for `import "path"` in `importer`, and where they were looked for (for errors)."""
    if path.startswith(ZOO_PREFIX):
        zoo = zoo_root()
        if zoo is None:
            return [], "the zoo (no specs/ folder next to dlc; set DLC_ZOO to the zoo's folder)"
        return [zoo / path[len(ZOO_PREFIX):]], f"the zoo {zoo}"
    dirs = [importer.parent] + search_dirs(include)
    where = ", ".join(str(d) or "." for d in dirs)
    return [d / path for d in dirs], where


def prepend_env(dirs) -> None:
    """`dlc --include DIR`: DIR goes in front of `DLC_PATH` (inherited by worker processes)."""
    extra = [str(Path(d).resolve()) for d in dirs]
    if extra:
        os.environ["DLC_PATH"] = os.pathsep.join(extra + list(env_path()))
