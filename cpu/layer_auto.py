"""The conv1d layer's `auto` variant: per shape, the variant measured fastest on the nearest measured shape.

    auto    direct (cpu/layer.py), gemm_folded (cpu/layer_gemm.py), gemm_packed (cpu/layer_packed.py) or blocked
            (cpu/layer_blocked.py), forward and backward chosen apart, from this machine's table in
            `cpu/layer_choice/`, which `make tune` (python -m plots.bench.tune --layer) measures

The table holds measured shapes, each with the fastest variant of each pass (a table measured before a variant
joined VARIANTS stays valid: only the winners' names are read, not every variant's times). A problem takes the
choice of the nearest one, by the distance of the shape features that decide the variants' speed:

    log2 of N*L_out (the columns of every product), C_in/groups and C_out/groups (its reduction and rows), K
    and whether stride > 1, dilation > 1, and the layer is depthwise (C_in/groups = C_out/groups = 1)

(a categorical mismatch costs DIFFERENT_KIND, more than any difference of sizes between shapes of one kind).
The tables are one per CPU, named by cpu.machine.cpu_slug, since the winners differ between CPUs (the Intel
Xeon and the AMD EPYC Zen 4 pick differently on 7 of 32 (shape, pass) pairs). A CPU without a table of its
own reads the nearest one's: the same vendor and vector ISA, else the same ISA, else any (table_order). Without a valid
table the rule of FALLBACK applies, with one warning naming the file.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from pathlib import Path

from cpu import layer, layer_blocked, layer_gemm, layer_packed, machine
from kernels import jsonfile

#: The tables: <cpu slug>.json, one per CPU measured.
FOLDER = Path(__file__).with_name("layer_choice")
TOOL = "python -m plots.bench.tune --layer"
SCHEMA = 1
#: The variants auto chooses between: name -> (forward, backward).
VARIANTS = {"direct": (layer.direct_forward, layer.direct_backward),
            "gemm_folded": (layer_gemm.forward_folded, layer_gemm.backward_folded),
            "gemm_packed": (layer_packed.forward, layer_packed.backward),
            "blocked": (layer_blocked.forward, layer_blocked.backward)}
PASSES = ("forward", "backward")
DIFFERENT_KIND = 100.0
#: Without a table: direct for depthwise layers and products under SMALL multiply-adds per (group, tap)
#: (call overhead dominates there), else gemm_folded.
SMALL = 1 << 17


def features(p) -> tuple:
    """(sizes in log2, kinds) of a layer problem, as the distance reads them."""
    sizes = (math.log2(max(1, p.N * p.L_out)), math.log2(p.C_in_g), math.log2(p.C_out_g), math.log2(p.K))
    kinds = (p.stride > 1, p.dilation > 1, p.C_in_g == 1 and p.C_out_g == 1)
    return sizes, kinds


def distance(a: tuple, b: tuple) -> float:
    (sa, ka), (sb, kb) = a, b
    return math.dist(sa, sb) + DIFFERENT_KIND * sum(x != y for x, y in zip(ka, kb))


def validate(table: dict) -> None:
    """ValueError unless `table` follows the schema: {"schema": 1, "points": [{"features": [[4 sizes], [3 kinds]],
    "forward": variant, "backward": variant, ...}, ...]} with at least one point and known variants."""
    if not isinstance(table, dict) or table.get("schema") != SCHEMA:
        raise ValueError(f"layer choice: expected schema {SCHEMA}")
    points = table.get("points")
    if not isinstance(points, list) or not points:
        raise ValueError("layer choice: expected a non-empty list of points")
    for pt in points:
        sizes, kinds = pt["features"]
        if len(sizes) != 4 or len(kinds) != 3 or any(pt[s] not in VARIANTS for s in PASSES):
            raise ValueError(f"layer choice: bad point {pt}")


def path_for(cpu: dict) -> Path:
    """Where the table measured on `cpu` (a cpu.machine.cpu_info record) goes."""
    return FOLDER / f"{machine.cpu_slug(cpu)}.json"


def table_order(cpu: dict, folder: Path = FOLDER) -> list:
    """The tables of `folder`, the one to read first: `cpu`'s own, then those of the same vendor (first word of
    the model) and vector ISA, then the same ISA, then the rest, each group by name."""
    own = path_for(cpu).name
    vendor, isa = cpu["model"].split()[0].lower(), machine.cpu_isa(cpu)

    def rank(path):
        try:
            other = json.loads(path.read_text())["machine"]
            same_isa, same_vendor = machine.cpu_isa(other) == isa, other["model"].split()[0].lower() == vendor
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
            same_isa = same_vendor = False
        return path.name != own, not (same_isa and same_vendor), not same_isa, path.name

    return sorted(folder.glob("*.json"), key=rank)


@functools.cache
def load(path: Path | None = None) -> tuple:
    """The points of the table at `path` (default: this CPU's, or the nearest CPU's: table_order) as
    ((sizes, kinds), {pass: variant}); () with one warning when missing or invalid."""
    if path is None:
        path = next(iter(table_order(machine.cpu_info())), path_for(machine.cpu_info()))
    try:
        table = json.loads(Path(path).read_text())
        validate(table)
    except FileNotFoundError:
        reason = "missing"
    except (OSError, ValueError, KeyError, TypeError) as e:
        reason = f"invalid ({type(e).__name__}: {e})"
    else:
        return tuple(((tuple(pt["features"][0]), tuple(pt["features"][1])), {s: pt[s] for s in PASSES})
                     for pt in table["points"])
    warnings.warn(f"layer choice table {path} is {reason}: the layer's auto uses its fallback rule (rewrite it "
                  f"with {TOOL})", RuntimeWarning, stacklevel=3)
    return ()


def write(table: dict, path: Path | None = None) -> Path:
    """The one writer of the tables (plots.bench.tune --layer): validated, then written atomically to `path`
    (default: the file of the CPU it was measured on)."""
    validate(table)
    written = jsonfile.write(table, path or path_for(table["machine"]))
    load.cache_clear()
    return written


def fallback(p) -> str:
    if p.C_in_g == 1 and p.C_out_g == 1 or p.N * p.C_out_g * p.C_in_g * p.L_out < SMALL:
        return "direct"
    return "gemm_folded"


def choose(p, which: str, points=None) -> str:
    """The variant `auto` runs for pass `which` ("forward" or "backward") of the problem p."""
    points = load() if points is None else points
    if not points:
        return fallback(p)
    f = features(p)
    return min(points, key=lambda pt: distance(f, pt[0]))[1][which]


def forward(p, x, w, b, y):
    """direct, gemm_folded, gemm_packed or blocked per shape: the fastest on the nearest shape measured here"""
    VARIANTS[choose(p, "forward")][0](p, x, w, b, y)


def backward(p, x, w, g, dx, dw, db):
    """direct, gemm_folded, gemm_packed or blocked per shape: the fastest on the nearest shape measured here"""
    VARIANTS[choose(p, "backward")][1](p, x, w, g, dx, dw, db)
