"""Tables the playground measures and reads back (crossovers, the layer's choices), written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write(table: dict, path) -> Path:
    """`table` as JSON at `path`, atomically: a temporary file in the same folder, then os.replace, so that a
    reader sees the old table or the new one, never a partial one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(table, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
