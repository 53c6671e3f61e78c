"""Launch options shared by the GPU backends, parsed once per call from `kernels.get(..., **options)`.

Every kernel strides over the work beyond its grid, so `max_blocks` caps the grid without limiting n.
A backend with more options subclasses `Launch` with more positive-integer fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Launch:
    backend: ClassVar[str] = "gpu"  # named in error messages
    block: int = 128  # threads per block: a power of two in [32, 1024]
    max_blocks: int = 1 << 16  # grid cap: kernels stride over the work beyond it

    @classmethod
    def of(cls, options: dict) -> Launch:
        """The launch described by a call's options; TypeError/ValueError names a bad one."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise TypeError(f"{cls.backend} options: unknown {unknown}, expected some of {names}")
        launch = cls(**options)
        if launch.block not in (32, 64, 128, 256, 512, 1024):
            raise ValueError(f"block: expected a power of two in [32, 1024], got {launch.block!r}")
        for name in names[1:]:
            value = getattr(launch, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        return launch

    def blocks(self, items: int, per_block: int) -> int:
        """Grid size for `items` work items, `per_block` per block: ceil division, capped."""
        return max(1, min(-(-items // per_block), self.max_blocks))
