"""python -m plots.model: draw the static GPU model (plots.model.draw)."""

import sys

from plots.model.draw import main

sys.exit(main())
