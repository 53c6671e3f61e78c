"""The GPU backends: one declaration per step (steps.py), the launch math both share (launch.py), the `auto`
steps (auto.py), the CUDA C backend (cupy/), the numba.cuda backend (numba_cuda/) and the CPU emulator of
CUDA C (emu/). The static model and the real-compile checks that judge these kernels live in plots/model/."""
