"""The static model's predictions as data: every modelled GPU step on a grid of (n, k), the `auto` variants,
the layer at its target shape, and the ladder's targets, written as a JSON-lines file like a results file
(a metadata line, then one record per prediction or target), drawn by plots/draw/model.py.

    python -m plots.model [--device h100-sxm h200] [--measured RESULTS.jsonl] [--out plots/]
                                                   # predict (when the sources changed) and draw

The file, plots/results/model-<key>.jsonl, is named by a hash of everything the predictions depend on (the
kernel sources, the model's code, the toolchain: plots.model.child.content_key), so an unchanged model is read
back, not recomputed. Every number in it is a MODEL, not a measurement: see plots/model/oned.py and
plots/model/layer.py for what the bounds capture and leave out.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from gpu import auto
from plots.bench import machine
from plots.bench.results import RESULTS_DIR
from plots.model import child, crossover, oned
from plots.model import layer as layer_model
from plots.model.devices import DEVICES

NS = tuple(int(10**e) for e in (3, 4, 5, 6, 7, 8, 9))
KS = (1, 3, 7, 15, 31, 63, 127, 255, 511, 1023, 2047, 4095)
KS_AT = (3, 31, 511)
N_AT = 10**8
DEVICES_DRAWN = ("h100-sxm", "h200")


def auto_predictions(predictions) -> list[dict]:
    """Rows for each backend's `auto`: the model time of the side its crossover table picks at (n, k), the
    direct step's at k (its `wraps`, plots.model.crossover.wrapped_at) or the FFT's (plots.model.crossover.fft_time),
    bound "fft" then."""
    rows = []
    for p in predictions:
        if p["variant"] != crossover.wrapped_at(p["backend"], p["op"], p["k"]):
            continue
        row = {**p, "variant": "auto"}
        if auto.use_fft(auto.load(p["backend"]), p["op"], p["n"], p["k"], p["dtype"]):
            t = crossover.fft_time(p["n"], p["k"], 4 if p["dtype"] == "float32" else 8, DEVICES[p["device"]])
            scale = p["time_s"] / t
            row.update(time_s=t, bound="fft", gbs=p["gbs"] * scale, gflops=p["gflops"] * scale,
                       hbm_fraction=p["hbm_fraction"] * scale, peak_fraction=p["peak_fraction"] * scale)
            row["optimistic"] = {key: row[key] for key in RATES}
        rows.append(row)
    return rows


#: The numbers of a prediction that its optimistic bound has too (the band's other end).
RATES = ("time_s", "bound", "gbs", "gflops", "hbm_fraction", "peak_fraction")


#: The ladder's targets by the model at n = 1e8: (op, small k?) -> (what, least share); the input gradient
#: runs the forward's engine (gpu/steps.py), so its row is the forward's.
TARGETS = {("conv1d", True): ("hbm_fraction", 0.80), ("conv1d", False): ("peak_fraction", 0.60),
           ("conv1d_weight_grad", True): ("hbm_fraction", 0.60), ("conv1d_weight_grad", False): ("peak_fraction", 0.60)}
TARGET_KS = (3, 7, 127, 511)
#: numba.cuda's best step within this factor of CUDA C's.
BACKEND_RATIO = 1.5


def targets(predictions, slug: str) -> list[dict]:
    """Per backend, op, dtype and k of TARGET_KS at N_AT: the default's direct step (what `auto` runs there,
    plots.model.crossover.wrapped_at), its share of HBM bandwidth (k <= 7) or of the dtype's FMA peak (k >= 127), the
    target and whether it is met (by the latency-aware estimate), the band up to the optimistic bound, the
    fastest variant by the model when another, and numba.cuda's default against CUDA C's (within
    BACKEND_RATIO). HBM shares are of the measured copy ceiling (plots.model.devices copy_gbs)."""
    at, best = {}, {}
    for p in predictions:
        if p["device"] != slug or p["n"] != N_AT or p["k"] not in TARGET_KS or p["variant"] == "auto":
            continue
        key = (p["backend"], p["op"], p["dtype"], p["k"])
        if p["variant"] == crossover.wrapped_at(p["backend"], p["op"], p["k"]):
            at[key] = p
        if key not in best or p["time_s"] < best[key]["time_s"]:
            best[key] = p
    rows = []
    for (backend, op, dtype, k), p in sorted(at.items()):
        what, least = TARGETS[(op, k <= 7)]
        fastest = best[(backend, op, dtype, k)]
        row = {"backend": backend, "op": op + (" (and conv1d_input_grad)" if op == "conv1d" else ""),
               "dtype": dtype, "k": k, "default": f"auto: {p['variant']}", "bound": p["bound"],
               "share": f"{p[what]:.1%} of {'HBM (copy)' if what == 'hbm_fraction' else 'FMA peak'}",
               "band": f"{p[what]:.1%} - {p.get('optimistic', p)[what]:.1%} ({p.get('optimistic', p)['bound']})",
               "target": f">= {least:.0%}", "met": "yes" if p[what] >= least else f"no ({p[what] / least:.2f}x)",
               "fastest": "" if fastest is p else f"{fastest['variant']} ({fastest[what]:.1%})"}
        cuda_c = at.get(("cupy", op, dtype, k))
        if backend == "numba_cuda" and cuda_c:
            ratio = p["time_s"] / cuda_c["time_s"]
            row["vs CUDA C"] = f"{ratio:.2f}x the time ({'within' if ratio <= BACKEND_RATIO else 'beyond'} 1.5x)"
        rows.append(row)
    return rows


#: The layer's targets by the model (plots.model.layer) at its target shape: op -> least share of the FMA peak.
LAYER_SHAPE = "N8 C64->128 L4096 K3"
LAYER_TARGETS = {"conv1d_layer": 0.50, "conv1d_layer_backward": 0.35}


def layer_targets(layer_predictions, slug: str) -> list[dict]:
    """Per backend, layer op and dtype at LAYER_SHAPE: the variant the default `auto` picks there
    (gpu.auto.layer_uses_gemm), its share of the FMA peak by the latency-aware estimate (which decides `met`)
    and the band up to the optimistic bound, the target, the fastest variant when another, and numba.cuda
    against CUDA C."""
    p0 = layer_model._problem(layer_model.SHAPES[LAYER_SHAPE], "float32")
    chosen = "gemm" if auto.layer_uses_gemm(p0) else "direct"
    at, best = {}, {}
    for p in layer_predictions:
        if p["device"] == slug and p["shape"] == LAYER_SHAPE:
            key = (p["backend"], p["op"], p["dtype"])
            if p["variant"] == chosen:
                at[key] = p
            if key not in best or p["time_s"] < best[key]["time_s"]:
                best[key] = p
    rows = []
    for (backend, op, dtype), p in sorted(at.items()):
        least = LAYER_TARGETS[op]
        fastest = best[(backend, op, dtype)]
        opt = p.get("optimistic", p)
        row = {"backend": backend, "op": op, "dtype": dtype, "k": 3, "default": f"auto: {p['variant']}",
               "bound": p.get("bound", ""), "share": f"{p['peak_fraction']:.1%} of FMA peak",
               "band": f"{p['peak_fraction']:.1%} - {opt['peak_fraction']:.1%} ({opt.get('bound', '')})",
               "target": f">= {least:.0%}",
               "met": "yes" if p["peak_fraction"] >= least else f"no ({p['peak_fraction'] / least:.2f}x)",
               "fastest": "" if fastest is p else f"{fastest['variant']} ({fastest['peak_fraction']:.1%})"}
        cuda_c = at.get(("cupy", op, dtype))
        if backend == "numba_cuda" and cuda_c:
            ratio = p["time_s"] / cuda_c["time_s"]
            row["vs CUDA C"] = f"{ratio:.2f}x the time ({'within' if ratio <= BACKEND_RATIO else 'beyond'} 1.5x)"
        rows.append(row)
    return rows


def predictions(devices=DEVICES_DRAWN) -> tuple[list[dict], list[dict]]:
    """(1-D and layer prediction rows, target rows) for `devices`."""
    layer_preds = layer_model.model(shapes={LAYER_SHAPE: layer_model.SHAPES[LAYER_SHAPE]},
                                    dtypes=("float32", "float64"), devices=devices)
    grid_n = oned.model(NS, KS_AT, devices=devices)
    grid_k = oned.model((N_AT,), KS, devices=devices)
    goals = oned.model((N_AT,), TARGET_KS, dtypes=("float32", "float64"), devices=devices)
    unique = {(p["device"], p["backend"], p["variant"], p["op"], p["dtype"], p["n"], p["k"]): p
              for p in grid_n + grid_k + goals}
    preds = list(unique.values())
    preds += auto_predictions(preds)
    target_rows = [{**r, "device": slug, "table": "1-D"} for slug in devices for r in targets(preds, slug)]
    target_rows += [{**r, "device": slug, "table": "layer"} for slug in devices
                    for r in layer_targets(layer_preds, slug)]
    return preds + [{**p, "layer": True} for p in layer_preds], target_rows


def path_for(devices=DEVICES_DRAWN, directory: Path = RESULTS_DIR) -> Path:
    return Path(directory) / f"model-{child.content_key(('predictions', tuple(devices)))}.jsonl"


def write(devices=DEVICES_DRAWN, directory: Path = RESULTS_DIR, log=None) -> Path:
    """The predictions file of the current sources, computed and written only when it is not there yet."""
    path = path_for(devices, directory)
    if path.exists():
        return path
    if log:
        print(f"model: predicting {', '.join(devices)} (kernel compiles and traces, cached afterwards)", file=log)
    preds, target_rows = predictions(devices)
    meta = {"type": "meta", "kind": "model", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "devices": {s: DEVICES[s].as_dict() for s in devices}, "git": machine.git(),
        "label": "MODEL, not measured"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    with open(tmp, "w") as f:
        for record in (meta, *({"type": "prediction", **p} for p in preds),
                       *({"type": "target", **r} for r in target_rows)):
            f.write(json.dumps(record, default=str) + "\n")
    tmp.replace(path)
    return path


def read(path) -> tuple[dict, list[dict], list[dict]]:
    """(meta, predictions, targets) of a predictions file."""
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if not records or records[0].get("kind") != "model":
        raise ValueError(f"{path}: not a predictions file (its first line is not a model metadata record)")
    return (records[0], [r for r in records if r.get("type") == "prediction"],
            [r for r in records if r.get("type") == "target"])

