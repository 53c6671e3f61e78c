"""python -m plots.model: the static model's predictions (when the sources changed), then their figures.

The command lives here rather than in plots.model.predict because the figures (plots.draw.model) read
that module: predict writes the data, plots/draw/ draws it, and this entry point runs one then the other.
"""

import argparse
import sys

from plots.bench.results import FIGURES_DIR, load
from plots.draw import model as draw_model
from plots.model import predict
from plots.model.devices import DEVICES


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plots.model", description=predict.__doc__.splitlines()[0])
    ap.add_argument("--device", nargs="+", default=list(predict.DEVICES_DRAWN), choices=sorted(DEVICES))
    ap.add_argument("--measured", help="a results file measured on a GPU (plots/results/*.jsonl)")
    ap.add_argument("--out", default=str(FIGURES_DIR), help="where <device>-model/ goes (plots/figures/)")
    args = ap.parse_args(argv)
    path = predict.write(tuple(args.device))
    print(path)
    measured = load(args.measured) if args.measured else None
    for written in draw_model.draw(path, args.out, measured):
        print(written)
    if measured is not None:
        print("\n".join(draw_model.errors(path, measured)) or "no measured row matches a prediction of these devices")
    return 0


if __name__ == "__main__":
    sys.exit(main())
