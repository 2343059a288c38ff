"""Package-manifest fuzzing (issue 10, acceptance): seeded random mutations of
a real package's manifest, members and bytes.  Every outcome is a clean run
or a `DlcError`; any other exception (or a file written outside the private
extraction folder) is a bug."""
import json
import os
import random
import tempfile
import time
import zipfile

import numpy as np
import pytest

pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

import dlc.runtime  # noqa: E402
from dlc.errors import DlcError  # noqa: E402
from pkg_tamper import build_package, members, write_members  # noqa: E402

SEED = 20261207
EXAMPLES = 500
HOSTILE = [None, True, False, -1, 0, 1, 2 ** 63, 10 ** 30, -(10 ** 30), 1.5, float("nan"), "", "N", "../../x",
           "/etc/passwd", "lib/lib.so", "lib.so", "x" * 5000, [], {}, [-1], ["N"], [10 ** 9, 10 ** 9],
           {"a": 1}, [None], "float99", "object", "complex128", "dlcpkg"]


@pytest.fixture(scope="module")
def pkg(tmp_path_factory):
    cache = tmp_path_factory.mktemp("dlc-cache")
    old = os.environ.get("DLC_CACHE_DIR")
    os.environ["DLC_CACHE_DIR"] = str(cache)
    try:
        out = tmp_path_factory.mktemp("pkg") / "mlp.dlcpkg"
        build_package("specs/mlp.dln", out)
        yield out
    finally:
        if old is None:
            os.environ.pop("DLC_CACHE_DIR", None)
        else:
            os.environ["DLC_CACHE_DIR"] = old


def _paths(node, prefix=()):
    """Every key path in a JSON tree."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _parent(root, path):
    for k in path[:-1]:
        root = root[k]
    return root


def _mutate_manifest(rng: random.Random, m: dict) -> str:
    path = rng.choice(_paths(m))
    parent, key = _parent(m, path), path[-1]
    op = rng.choice(["delete", "replace", "replace", "scale", "duplicate"])
    if op == "delete":
        del parent[key]
    elif op == "scale" and isinstance(parent[key], int) and not isinstance(parent[key], bool):
        parent[key] = parent[key] * rng.choice([-1, 0, 2, 10 ** 6, 10 ** 12]) + rng.choice([0, 1, -1])
    elif op == "duplicate" and isinstance(parent[key], list) and parent[key]:
        parent[key].append(json.loads(json.dumps(parent[key][0])))
    else:
        parent[key] = rng.choice(HOSTILE)
        op = "replace"
    return f"manifest {op} {'.'.join(map(str, path))}"


def _mutate_members(rng: random.Random, items: list) -> str:
    i = rng.randrange(len(items))
    name, data = items[i]
    op = rng.choice(["drop", "rename", "duplicate", "truncate", "flip", "garbage", "grow"])
    if op == "drop":
        items.pop(i)
    elif op == "rename":
        items[i] = (rng.choice(["../lib.so", "/tmp/lib.so", "lib/lib.so", "manifest.json", "lib.tar",
                                "weights.safetensors", "LIB.SO"]), data)
    elif op == "duplicate":
        items.append((name, data if rng.random() < 0.5 else os.urandom(64)))
    elif op == "truncate":
        items[i] = (name, data[:rng.randrange(len(data) + 1)])
    elif op == "flip" and data:
        b = bytearray(data)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        items[i] = (name, bytes(b))
    elif op == "grow":
        items[i] = (name, data + bytes(rng.randrange(1, 1 << 16)))
    else:
        items[i] = (name, os.urandom(rng.randrange(1, 4096)))
    return f"member {op} {name}"


def _flip_file(rng: random.Random, raw: bytes) -> tuple[bytes, str]:
    b = bytearray(raw)
    if rng.random() < 0.2:
        return bytes(b[:rng.randrange(len(b))]), "file truncate"
    for _ in range(rng.randint(1, 4)):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b), "file flip"


def _one_case(rng: random.Random, base: list, out) -> str:
    """Write one mutated copy of the package to `out`; returns what changed.
    Manifest edits come first, then member edits, then raw byte damage."""
    kinds = sorted(rng.choice(["manifest"] * 6 + ["member"] * 3 + ["file"])
                   for _ in range(rng.choice([1, 1, 2, 3])))
    items = [(i.filename, d) for i, d in base]
    m = json.loads(dict(items)["manifest.json"])
    what = [_mutate_manifest(rng, m) for k in kinds if k == "manifest"]
    if what:
        items = [(n, json.dumps(m).encode() if n == "manifest.json" else d) for n, d in items]
    what += [_mutate_members(rng, items) for k in kinds if k == "member"]
    write_members(out, items, compress=rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    if "file" in kinds:
        raw, how = _flip_file(rng, out.read_bytes())
        out.write_bytes(raw)
        what.append(how)
    return "; ".join(what)


def test_mutated_packages_run_or_give_a_dlc_error(pkg, tmp_path, monkeypatch):
    ext = tmp_path / "tmp"
    ext.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(ext))
    base = members(pkg)
    rng = random.Random(SEED)
    outcomes = {"ran": 0, "DlcError": 0}
    bugs = []
    t0 = time.monotonic()
    for n in range(EXAMPLES):
        out = tmp_path / f"case{n % 8}.dlcpkg"
        what = _one_case(rng, base, out)
        try:
            loaded = dlc.runtime.load(out)
            res = loaded.run(seed=n)
            assert all(isinstance(v, np.ndarray) for v in res.values())
            outcomes["ran"] += 1
        except DlcError as e:
            assert "\n" not in e.message, (what, e.message)
            outcomes["DlcError"] += 1
        except Exception as e:  # noqa: BLE001 - the bug this test hunts
            bugs.append(f"case {n} ({what}): {type(e).__name__}: {str(e)[:300]}")
        leftovers = [p for p in ext.rglob("*")]
        assert leftovers == [], (what, leftovers)
    elapsed = time.monotonic() - t0
    assert not bugs, f"{len(bugs)} of {EXAMPLES} mutated packages raised something else than a DlcError:\n" + \
        "\n".join(bugs[:15])
    # both outcomes occur: the mutations are neither all harmless nor all fatal
    assert outcomes["ran"] > 10 and outcomes["DlcError"] > EXAMPLES // 2, outcomes
    assert elapsed < 180, elapsed                # about 7 s on 2 busy cores
    assert not (tmp_path.parent / "x").exists() and not (tmp_path / "lib").exists()
