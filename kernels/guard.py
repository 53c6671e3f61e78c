"""Guard pages: arrays placed flush against a PROT_NONE page, so one element read or written out of bounds faults.

`Arena().guarded(a, side)` copies `a` into fresh anonymous memory (mmap) so that it ends exactly where a
PROT_NONE page begins (side "end") or begins exactly where one ends (side "start"). Reading or writing
one element past the array then faults at once (SIGSEGV) instead of picking up, or overwriting, whatever
lies there. A fault kills the process: callers run guarded calls in a child process (`kernels.isolate`,
tests/guard.py) and name the call it died in. `release` unmaps an arena's arrays, after every view of
them is gone.
"""

from __future__ import annotations

import ctypes
import mmap

import numpy as np

PAGE = mmap.PAGESIZE
SIDES = ("end", "start")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
MAP_FAILED = ctypes.c_void_p(-1).value
PROT_NONE = 0  # (the mmap module has PROT_READ and PROT_WRITE, not PROT_NONE)


class Arena:
    """Mappings made for one call, unmapped together by `release` (after every view of them is gone)."""

    def __init__(self):
        self.maps = []

    def guarded(self, a: np.ndarray, side: str = "end") -> np.ndarray:
        """A C-contiguous copy of `a` flush against a PROT_NONE page at its `side` ("end" or "start")."""
        if side not in SIDES:
            raise ValueError(f"side: expected one of {SIDES}, got {side!r}")
        a = np.asarray(a)
        if a.nbytes == 0:
            return a.copy()
        pages = -(-a.nbytes // PAGE)
        size = (pages + 1) * PAGE
        addr = _libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                          -1, 0)
        if addr in (None, MAP_FAILED):
            raise OSError(ctypes.get_errno(), "mmap failed")
        self.maps.append((addr, size))
        guard, start = (addr + pages * PAGE, addr + pages * PAGE - a.nbytes) if side == "end" else \
            (addr, addr + PAGE)
        if _libc.mprotect(guard, PAGE, PROT_NONE) != 0:
            raise OSError(ctypes.get_errno(), "mprotect failed")
        view = np.frombuffer((ctypes.c_char * a.nbytes).from_address(start), a.dtype).reshape(a.shape)
        view[...] = a
        return view

    def release(self):
        for addr, size in self.maps:
            _libc.munmap(addr, size)
        self.maps = []
