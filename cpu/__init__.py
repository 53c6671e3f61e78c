"""CPU backends: numba @njit kernels.

Idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) unless the user chose a policy, set here before numba's
first parallel loop loads libgomp. numba's parallel loops and OpenBLAS's threads take turns on the same
cores (the layer packs in numba and multiplies in BLAS), and an idle thread that spins holds the core the
other pool needs until the scheduler's time slice ends: measured on 2 cores, a layer call of 0.25 ms took
7.6 ms with the runtime's default (spin, then sleep), and the packed layer 104 ms instead of 18 ms.
"""

import os

#: OpenMP's wait policy for idle threads, unless the environment sets one (USER_WAIT_POLICY, None if not).
WAIT_POLICY = "PASSIVE"
USER_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")
os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
