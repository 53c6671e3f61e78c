"""`python -m plots bench FILE`: time the kernels a file declares beside the built-in variants and baselines.

The run covers the ops the file declares (a 1-D op: k in {3, 31, 127, 511} and n = 1e3..1e6 on the CPU,
1e3..1e8 on a GPU; a layer op: the layer preset's shapes), with every implementation of those ops that
runs here; `--preset` takes that preset's grids (for the declared ops) instead, and every other flag of
`python -m plots bench` applies as it does to a preset. Its results file and its plots go to a folder of
their own, `<out>/<run>/`, so nothing of another run mixes in. Kernels that run on numba's CUDA simulator
or the CUDA C emulator are checked, never timed: a time on the CPU says nothing about a GPU. For those,
the static model of the GPU kernels (`python -m plots.model.oned`), where present, is what there is to
look at until a GPU is at hand.

`bench_file` returns the run's folder and the declared kernels' failures (a point where one was wrong,
impossibly fast or raised): `python -m plots bench FILE` exits 1 when there is any.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from kernels import playground, registry
from kernels.spec import OPS
from plots.bench import results, runner
from plots.bench.sweeps import DEFAULT_EXCLUDE, LAYER_SHAPES, Grid, Preset, decades

#: Signal lengths of a run over a file's 1-D ops, per device, and its filter lengths.
NS = {"cpu": decades(3, 6), "gpu": decades(3, 8)}
KS = (3, 31, 127, 511)
TIMED = {"available": "cpu", "real GPU": "gpu"}
#: Row statuses that fail `bench FILE` when a declared kernel has one.
FAILED = ("wrong", "impossible", "error")


def preset_for(declared, *, base: Preset | None = None, ns=None, ks=KS, dtypes=("float32",),
               devices=None) -> tuple[Preset, list[str]]:
    """(the preset timing the declared kernels' ops, notes on the declared kernels it cannot time).

    With `base`, its grids restricted to the declared ops; else one grid per device and dtype (n from NS
    unless `ns`). `devices` keeps only those devices' grids."""
    notes, timed = [], set()
    for d in declared:
        st = registry.status(d.backend)
        if st.state in TIMED:
            timed.add(TIMED[st.state])
        else:
            notes.append(f"{d} runs {st.state} here ({st.reason}): checked by `python -m kernels check`, "
                         "not timed (no GPU here)")
    ops = tuple(dict.fromkeys(d.op for d in declared))
    wanted = timed & set(devices or ("cpu", "gpu"))
    if base is not None:
        grids = [replace(g, ops=tuple(op for op in ops if g.accepts(op))) for g in base.grids if g.device in wanted]
        grids = [g for g in grids if g.ops and (dtypes is None or g.dtype in dtypes)]
        return replace(base, name=f"mine-{base.name}", grids=tuple(grids)), notes
    line_ops = tuple(op for op in ops if OPS[op].family != "layer")
    layer_ops = tuple(op for op in ops if OPS[op].family == "layer")
    grids = []
    for device in sorted(wanted):
        for dtype in dtypes or ("float32",):
            if line_ops:
                grids.append(Grid(device, dtype, tuple(ns or NS[device]), tuple(ks), ops=line_ops))
            if layer_ops:
                grids.append(Grid(device, dtype, (), ops=layer_ops, shapes=LAYER_SHAPES[:2],
                                  exclude=DEFAULT_EXCLUDE + ("*:naive",)))
    preset = Preset("mine", f"the kernels of {len({d.variant for d in declared})} declared variant(s)",
                    tuple(grids), budget=0.05, max_call=0.5)
    return preset, notes


def bench_file(declared, preset: Preset, path, *, out=None, use_out=True, progress=True, seed=0, spin=False,
               log=sys.stderr) -> tuple[Path, list[dict]]:
    """Time `preset` (from `preset_for`), draw the plots: (the run's folder, the declared kernels' failed rows)."""
    from plots import draw  # heavy: matplotlib, only when a run is drawn

    folder = Path(out or f"bench-{Path(path).stem}")
    staging = folder / "runs"
    results_path = runner.run(preset, directory=staging, use_out=use_out, seed=seed, progress=progress, spin=spin,
                              log=log)
    run_dir = folder / results_path.stem
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / results_path.name
    results_path.replace(final)
    for leftover in sorted(staging.rglob("*"), reverse=True) + [staging]:  # the writer's empty folders
        if leftover.is_dir() and not any(leftover.iterdir()):
            leftover.rmdir()
    run = results.load(final)
    mine = {f"{d.backend}:{d.variant}" for d in declared}
    for device in run.devices():
        written = draw.draw_run(run, device, run_dir)
        print(f"bench: {len(written)} plots in {written[0].parent if written else run_dir}", file=log)
    failed = []
    for row in (r for r in run.rows if r.get("impl") in mine and r.get("status") != "ok"):
        print(f"bench: {row['impl']} {row['op']} {row['dtype']} n={row.get('n')} k={row.get('k')}: {row['status']} "
              f"{row.get('reason', '')}", file=log)
        if row["status"] in FAILED:
            failed.append(row)
    for row in (r for r in run.rows if r.get("impl") in mine and r.get("over_max_call")):
        print(f"bench: {row['impl']} {row['op']} n={row.get('n')} k={row.get('k')}: {row['reason']}", file=log)
    return run_dir, failed


def load(path) -> list:
    """The kernels FILE declares (FileNotFoundError or ValueError naming what is wrong)."""
    return playground.load_file(path)


def print_model(log=sys.stderr):
    """Nothing timed here: say where the static GPU model is."""
    print("bench: nothing to time on this machine; `python -m plots.model.oned` prints the static model of the "
          "playground's GPU kernels (registers, occupancy, bytes and FMAs per output, roofline bound)", file=log)
