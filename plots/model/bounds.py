"""The time bounds both models (plots/model/oned.py, plots/model/layer.py) share, one formula each.

    pipe_time(wavefronts per SM, device)   shared memory or L1: one 128-byte wavefront per clock per SM
                                           (32 banks of 4 bytes; 4 sectors of 32 bytes), so the busiest SM
                                           takes wavefronts / clock seconds
    little_time(bytes, ...)                Little's law: an SM with T resident threads, each keeping b bytes of
                                           loads in flight, reads T*b bytes per latency; so reading `bytes`
                                           over S SMs takes bytes * latency / (S*T*b)
    waves(blocks, slots)                   blocks run in waves of `slots` (resident blocks per SM x SMs); the last
                                           wave's tail: ceil(waves) / waves of the time whole waves would take
    chunk_round(...)                       cycles for each of b co-resident blocks to do one chunk: the block's
                                           dependent round trips x latency plus its own issue time (a barrier
                                           separates them), or the SM's issue or FMA pipe for all b, whichever
                                           is longer
"""

from __future__ import annotations

import math


def pipe_time(wavefronts_per_sm: float, device) -> float:
    """Seconds the shared-memory or L1 pipe of the busiest SM needs for `wavefronts_per_sm` wavefronts."""
    return wavefronts_per_sm / (device.clock_ghz * 1e9)


def little_time(nbytes: float, sms: float, threads_per_sm: float, bytes_in_flight: float, latency_s: float) -> float:
    """Seconds to read `nbytes` when each of `threads_per_sm` threads on `sms` SMs keeps `bytes_in_flight` bytes
    of loads in flight, each load answered after `latency_s` (Little's law); inf when nothing is in flight."""
    rate = sms * threads_per_sm * bytes_in_flight / latency_s
    return nbytes / rate if rate > 0 else math.inf


def waves(blocks: int, slots: int) -> tuple[float, float]:
    """(waves, tail factor) of `blocks` blocks on `slots` block slots of the whole GPU: the last wave holds
    fewer blocks but lasts as long, so the time is ceil(waves) / waves that of full waves (1 within a wave)."""
    w = blocks / max(1, slots)
    return w, (math.ceil(w) / w if w > 1 else 1.0)


def chunk_round(blocks: float, warps: int, instructions: float, round_trips: float, latency_cycles: float,
                fmas_per_block: float, device, lanes: int) -> dict:
    """Cycles for `blocks` co-resident blocks of `warps` warps to do one chunk each, every warp issuing
    `instructions`, each block waiting `round_trips` x `latency_cycles` for its loads: {"latency": one block's
    round trips and its own issue (one instruction per warp per clock, at most `issue_per_clk_sm` warps at
    once), "issue": the SM's issue of all blocks, "fma": the FMA pipe's}."""
    own = instructions * warps / min(warps, device.issue_per_clk_sm)
    return {"latency": round_trips * latency_cycles + own,
            "issue": blocks * warps * instructions / device.issue_per_clk_sm,
            "fma": blocks * fmas_per_block / lanes}
