"""python -m plots [RESULTS.jsonl ...] [--out DIR]

Draw the five plot kinds for each op and dtype, per device, from results files written by
`python -m kernels bench`: by default the newest file in plots/results/ for each device found there.
"""

import argparse
import sys
from pathlib import Path

from kernels.bench import results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", help="results files (default: the newest per device)")
    parser.add_argument("--results-dir", default=str(results.RESULTS_DIR), help="where to look for them")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent), help="output folder (plots/)")
    args = parser.parse_args(argv)

    from plots import draw

    if args.files:
        runs = [(run, device) for run in map(results.load, args.files) for device in run.devices()]
    else:
        runs = results.newest_per_device(Path(args.results_dir))
    if not runs:
        print(f"no results in {args.results_dir}: run `python -m kernels bench` first", file=sys.stderr)
        return 1
    palette = draw.Palette({r["impl"] for run, _ in runs for r in run.rows})
    for run, device in runs:
        written = draw.draw_run(run, device, Path(args.out), palette)
        print(f"{run.device_name(device)} ({run.path.name}): {len(written)} files in "
              f"{written[0].parent if written else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
