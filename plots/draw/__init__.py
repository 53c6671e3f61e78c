"""Drawing, from data files only (never from live measurements or live model runs):

    plots/draw/measured.py   results of `python -m plots bench`: five figures per op and dtype, the layer bars,
                             summary.md
    plots/draw/model.py      predictions of the static GPU model (`python -m plots.model`), with measured GPU
                             rows beside them when there are any; targets.md
    plots/draw/style.py      what every figure shares: colours, line styles, markers, axes, legends
"""

from plots.draw.measured import KINDS, draw_run
from plots.draw.style import HUES, OTHER_HUE, SHADES, Palette, family

__all__ = ["HUES", "KINDS", "OTHER_HUE", "SHADES", "Palette", "draw_run", "family"]
