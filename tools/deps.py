"""Print the dependency list of pyproject.toml (base plus the named extras), one per line, for pip.

    python tools/deps.py test gpu
"""

import sys
from pathlib import Path

import tomllib


def requirements(extras):
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return reqs


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1:])))
