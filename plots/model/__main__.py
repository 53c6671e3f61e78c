"""python -m plots.model: the static model's predictions (when the sources changed), then their figures."""

import sys

from plots.model.predict import main

sys.exit(main())
