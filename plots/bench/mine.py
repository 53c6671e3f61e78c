"""`python -m plots bench FILE`: time the kernels a file declares beside the built-in variants and baselines.

The run covers the ops the file declares (a 1-D op: n = 1e3..1e6 and k in {3, 31, 127, 511} on the
CPU; a layer op: the layer preset's shapes), with every implementation of those ops that runs here.
Its results file and its plots go to a folder of their own, `<out>/<run>/`, so nothing of another run
mixes in. Kernels that run on numba's CUDA simulator or the CUDA C emulator are checked, never timed:
a time on the CPU says nothing about a GPU. For those, the static model of the GPU kernels
(`python -m plots.model.oned`), where present, is what there is to look at until a GPU is at hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kernels import playground, registry
from kernels.spec import OPS
from plots.bench import results, runner
from plots.bench.sweeps import DEFAULT_EXCLUDE, LAYER_SHAPES, Grid, Preset, decades

#: Signal and filter lengths of a run over a file's 1-D ops.
NS = decades(3, 6)
KS = (3, 31, 127, 511)
TIMED = {"available": "cpu", "real GPU": "gpu"}


def preset_for(declared, *, ns=NS, ks=KS, dtypes=("float32",)) -> tuple[Preset, list[str]]:
    """(the preset timing the declared kernels' ops, notes on the declared kernels it cannot time)."""
    notes, devices = [], set()
    for d in declared:
        st = registry.status(d.backend)
        if st.state in TIMED:
            devices.add(TIMED[st.state])
        else:
            notes.append(f"{d} runs {st.state} here ({st.reason}): checked by `python -m kernels check`, "
                         "not timed (no GPU here)")
    ops = tuple(dict.fromkeys(d.op for d in declared))
    line_ops = tuple(op for op in ops if OPS[op].family != "layer")
    layer_ops = tuple(op for op in ops if OPS[op].family == "layer")
    grids = []
    for device in sorted(devices):
        for dtype in dtypes:
            if line_ops:
                grids.append(Grid(device, dtype, tuple(ns), tuple(ks), ops=line_ops))
            if layer_ops:
                grids.append(Grid(device, dtype, (), ops=layer_ops, shapes=LAYER_SHAPES[:2],
                                  exclude=DEFAULT_EXCLUDE + ("*:naive",)))
    preset = Preset("mine", f"the kernels of {len({d.variant for d in declared})} declared variant(s)",
                    tuple(grids), budget=0.05, max_call=0.5)
    return preset, notes


def bench_file(path, *, out=None, ns=NS, ks=KS, include=None, progress=True, seed=0, log=sys.stderr) -> Path | None:
    """Load FILE, time its kernels' ops, draw the plots; the run's folder, or None when nothing can be timed."""
    from plots import draw  # heavy: matplotlib, only when a run is drawn

    declared = playground.load_file(path)
    preset, notes = preset_for(declared, ns=ns, ks=ks)
    for note in notes:
        print(f"bench: {note}", file=log)
    if not preset.grids:
        _print_model(declared, log)
        return None
    if include:
        preset = preset.with_grids(include=tuple(include))
    folder = Path(out or f"bench-{Path(path).stem}")
    staging = folder / "runs"
    results_path = runner.run(preset, directory=staging, seed=seed, progress=progress, log=log)
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
    for row in (r for r in run.rows if r.get("impl") in mine and r.get("status") != "ok"):
        print(f"bench: {row['impl']} {row['op']} n={row.get('n')} k={row.get('k')}: {row['status']} "
              f"{row.get('reason', '')}", file=log)
    return run_dir


def _print_model(declared, log):
    """Nothing timed here: say where the static GPU model is."""
    print("bench: nothing to time on this machine; `python -m plots.model.oned` prints the static model of the "
          "playground's GPU kernels (registers, occupancy, bytes and FMAs per output, roofline bound)", file=log)
