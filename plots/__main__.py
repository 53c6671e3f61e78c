"""python -m plots [bench ... | draw ... | publish]: measure, draw, publish.

    python -m plots bench --preset quick     # time every implementation, write plots/results/*.jsonl
    python -m plots draw [RESULTS.jsonl ...]  # draw plots/figures/<device>/ from results files (and, with no GPU
                                              # results, the static GPU model: plots/figures/<gpu>-model/)
    python -m plots publish                   # copy the newest runs and the model's predictions to
                                              # plots/published/results/ and draw plots/published/ from them
    python -m plots                           # the same as `python -m plots draw`

`draw` uses, by default, the newest file in plots/results/ of each kind (sweep, layer) for each device found
there. plots/results/ and plots/figures/ are ignored by git; plots/published/, which the README shows, changes
only through `publish`. The static model is drawn from its predictions for the current kernels, model and
toolchain (plots.model.predict, named by their content hash), from plots/results/ or plots/published/results/;
`draw` never computes them (minutes of real compiles): `python -m plots.model` (make gpu-inspect) does.
"""

import argparse
import shutil
import sys
from pathlib import Path

from plots.bench import cli as bench_cli
from plots.bench import results


def draw_runs(runs, out: Path) -> list[Path]:
    """Every figure of `runs` ((run, device) pairs) under out/<device slug>/, one palette for all."""
    from plots import draw  # heavy: matplotlib, not needed by `python -m plots bench`

    ladders = {}
    for run, _ in runs:
        for backend, variants in run.meta.get("ladders", {}).items():
            ladders.setdefault(backend, list(dict.fromkeys([*ladders.get(backend, []), *variants])))
    palette = draw.Palette({r["impl"] for run, _ in runs for r in run.rows}, ladders)
    written = []
    for run, device in runs:
        print(f"drawing {run.path.name} ({device}) ...", flush=True)
        files = draw.draw_run(run, device, out, palette)
        print(f"{run.device_name(device)} ({run.path.name}): {len(files)} files in "
              f"{files[0].parent if files else out}", flush=True)
        written += files
    return written


def cmd_draw(args) -> int:
    if args.files:
        try:
            runs = [(run, device) for run in map(results.load, args.files) for device in run.devices()]
        except (OSError, ValueError) as e:  # a missing file, or one that is not a results file
            message = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) else str(e)
            print(f"python -m plots draw: error: {message}", file=sys.stderr)
            return 2
    else:
        runs = results.newest_per_device(Path(args.results_dir))
    if not runs:
        print(f"no results in {args.results_dir}: run `python -m plots bench` first", file=sys.stderr)
        return 1
    draw_runs(runs, Path(args.out))
    if not args.no_model and not any(device == "gpu" for _, device in runs):
        draw_model(Path(args.out), [Path(args.results_dir), results.PUBLISHED_DIR / "results"])
    return 0


def predictions_file(folders) -> tuple[Path | None, str]:
    """(the predictions file of the current sources in the first of `folders` holding it, or None; its name)."""
    from plots.model import predict  # heavy: the whole static model (~0.1 s on every start), only to draw it

    name = predict.path_for().name
    return next((Path(d) / name for d in folders if (Path(d) / name).exists()), None), name


def draw_model(out: Path, folders) -> list[Path]:
    """No GPU measured: the static model's predictions of the GPU variants, beside the CPU plots, when the
    predictions of the current sources are in one of `folders` (else a line saying how to make them)."""
    from plots.draw import model as model_figures  # heavy: matplotlib, only without GPU results

    try:
        path, name = predictions_file(folders)
        if path is None:
            print(f"static GPU model not drawn: no {name} (the predictions of these kernels, model and toolchain) "
                  f"in {' or '.join(map(str, folders))}; `make gpu-inspect` computes them (minutes of real "
                  "compiles)", file=sys.stderr)
            return []
        print(f"static GPU model: drawing {path}", flush=True)
        written = model_figures.draw(path, out)
    except Exception as e:  # a missing GPU toolchain must not stop the CPU plots
        print(f"model plots not drawn: {type(e).__name__}: {e}", file=sys.stderr)
        return []
    folders = sorted({str(p.parent) for p in written})
    print(f"static GPU model (no GPU measured): {len(written)} files in {', '.join(folders)}")
    return written


def cmd_publish(args) -> int:
    """Replace the published runs of each device and kind that plots/results/ has a newer one of, and the
    published predictions by the current ones; then draw plots/published/ from what is published."""
    target = Path(args.out)
    store = target / "results"
    store.mkdir(parents=True, exist_ok=True)
    published = {_kind(run, device): run for run, device in results.newest_per_device(store)}
    for run, device in results.newest_per_device(Path(args.results_dir)):
        old = published.get(_kind(run, device))
        if old is not None and old.meta.get("date", "") >= run.meta.get("date", ""):
            continue
        if old is not None:
            old.path.unlink()
        shutil.copy2(run.path, store / run.path.name)
        print(f"published {run.path.name}")
    path, name = predictions_file([args.results_dir, store])
    if path is not None and path.parent != store:
        for stale in store.glob("model-*.jsonl"):
            stale.unlink()
        shutil.copy2(path, store / name)
        print(f"published {name}")
    runs = results.newest_per_device(store)
    if not runs:
        print(f"nothing to publish: no results in {args.results_dir} or {store}", file=sys.stderr)
        return 1
    draw_runs(runs, target)
    draw_model(target, [store])
    return 0


def _kind(run, device) -> tuple:
    """A published run's place: its device and whether it is a layer run."""
    return run.device_slug(device), any("shape" in r for r in run.rows)


def add_draw(sub):
    p = sub.add_parser("draw", help="draw plots/figures/<device>/ from results files")
    p.add_argument("files", nargs="*", help="results files (default: the newest per device and kind)")
    p.add_argument("--results-dir", default=str(results.RESULTS_DIR), help="where to look for them")
    p.add_argument("--out", default=str(results.FIGURES_DIR), help="output folder (plots/figures/)")
    p.add_argument("--no-model", action="store_true",
                   help="without GPU results, do not draw the static GPU model (plots/figures/<gpu>-model/)")
    p.set_defaults(run=cmd_draw)
    p = sub.add_parser("publish", help="copy the newest runs and predictions to plots/published/ and draw it")
    p.add_argument("--results-dir", default=str(results.RESULTS_DIR), help="where the runs are (plots/results/)")
    p.add_argument("--out", default=str(results.PUBLISHED_DIR), help="the published folder (plots/published/)")
    p.set_defaults(run=cmd_publish)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("bench", "draw", "publish", "-h", "--help"):
        argv = ["draw", *argv]
    parser = argparse.ArgumentParser(prog="python -m plots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    bench_cli.register(sub)
    add_draw(sub)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
