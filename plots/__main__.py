"""python -m plots [bench ... | draw ...]: measure, then draw.

    python -m plots bench --preset quick     # time every implementation, write plots/results/*.jsonl
    python -m plots draw [RESULTS.jsonl ...]  # draw plots/<device>/ from results files (and, with no GPU
                                              # results, the static GPU model: plots/<gpu>-model/)
    python -m plots                           # the same as `python -m plots draw`

`draw` uses, by default, the newest file in plots/results/ for each device found there.
"""

import argparse
import sys
from pathlib import Path

from plots.bench import cli as bench_cli
from plots.bench import results


def cmd_draw(args) -> int:
    from plots import draw  # heavy: matplotlib, not needed by `python -m plots bench`

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
    ladders = {}
    for run, _ in runs:
        for backend, variants in run.meta.get("ladders", {}).items():
            ladders.setdefault(backend, list(dict.fromkeys([*ladders.get(backend, []), *variants])))
    palette = draw.Palette({r["impl"] for run, _ in runs for r in run.rows}, ladders)
    for run, device in runs:
        written = draw.draw_run(run, device, Path(args.out), palette)
        print(f"{run.device_name(device)} ({run.path.name}): {len(written)} files in "
              f"{written[0].parent if written else args.out}")
    if not args.no_model and not any(device == "gpu" for _, device in runs):
        draw_model(Path(args.out))
    return 0


def draw_model(out: Path):
    """No GPU measured: the static model's predictions of the GPU variants, beside the CPU plots."""
    from plots.draw import model as model_figures  # heavy: matplotlib, only without GPU results
    from plots.model import predict  # heavy: the whole static model (~0.1 s on every start), only without GPU results

    try:
        written = model_figures.draw(predict.write(log=sys.stderr), out)
    except Exception as e:  # a missing GPU toolchain must not stop the CPU plots
        print(f"model plots not drawn: {type(e).__name__}: {e}", file=sys.stderr)
        return
    folders = sorted({str(p.parent) for p in written})
    print(f"static GPU model (no GPU measured): {len(written)} files in {', '.join(folders)}")


def add_draw(sub):
    p = sub.add_parser("draw", help="draw plots/<device>/ from results files")
    p.add_argument("files", nargs="*", help="results files (default: the newest per device)")
    p.add_argument("--results-dir", default=str(results.RESULTS_DIR), help="where to look for them")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent), help="output folder (plots/)")
    p.add_argument("--no-model", action="store_true",
                   help="without GPU results, do not draw the static GPU model (plots/<gpu>-model/)")
    p.set_defaults(run=cmd_draw)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("bench", "draw", "-h", "--help"):
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
