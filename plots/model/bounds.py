"""The time bounds both models (plots/model/oned.py, plots/model/layer.py) share, one formula each.

    pipe_time(wavefronts per SM, device)   shared memory or L1: one 128-byte wavefront per clock per SM
                                           (32 banks of 4 bytes; 4 sectors of 32 bytes), so the busiest SM
                                           takes wavefronts / clock seconds
"""

from __future__ import annotations


def pipe_time(wavefronts_per_sm: float, device) -> float:
    """Seconds the shared-memory or L1 pipe of the busiest SM needs for `wavefronts_per_sm` wavefronts."""
    return wavefronts_per_sm / (device.clock_ghz * 1e9)
