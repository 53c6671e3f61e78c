"""The GPUs the static performance model (plots.model.oned) knows: peak rates and per-SM resources.

One entry per device, every number with its source. Peaks are the datasheet's (boost clock); what a
kernel reaches is measured by `make gpu-report` (copy bandwidth, FMA kernel) when a GPU is at hand.

Sources:
  [H100]  NVIDIA H100 Tensor Core GPU datasheet (H100 SXM column): FP64 34 TFLOPS, FP32 67 TFLOPS,
          HBM3 3.35 TB/s; NVIDIA H100 Tensor Core GPU Architecture whitepaper (GH100): 132 SMs in the
          SXM5 part, 1980 MHz max boost for FP32/FP64 peak, 50 MB L2, 4 SM sub-partitions.
  [H200]  NVIDIA H200 Tensor Core GPU product brief (H200 SXM): same FP64/FP32 peaks as H100 SXM,
          HBM3e 4.8 TB/s, 141 GB; the same GH100 die (132 SMs, 50 MB L2).
  [A100]  NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM): FP64 9.7 TFLOPS, FP32 19.5 TFLOPS,
          HBM2e 2,039 GB/s; NVIDIA A100 Tensor Core GPU Architecture whitepaper: 108 SMs, 1410 MHz
          boost, 40 MB L2.
  [CCAP]  CUDA C++ Programming Guide, "Compute Capabilities" table (8.0 and 9.0): 65,536 32-bit
          registers per SM and at most 65,536 per block, 255 per thread, register allocation per warp
          in units of 256; 2,048 threads, 64 warps and 32 blocks per SM; 1,024 threads per block;
          shared memory per SM 164 KB (8.0) / 228 KB (9.0), per block 163 KB / 227 KB with opt-in,
          48 KB without; 1 KB of shared memory per block is reserved by the system.
  [TUNE]  NVIDIA Hopper / Ampere tuning guides: 32 shared-memory banks of 4 bytes, i.e. 128 bytes of
          shared memory per clock per SM; L1 serves 128 bytes (4 sectors of 32 bytes) per clock per SM.
  [COPY]  A plain device-to-device copy measured on this project's GPU machines (/work/shared/NOTES.md,
          `make gpu-report` measures it again): ~3.0 TB/s on the H100 SXM, ~4.3 TB/s on the H200, reads plus
          writes, 90% of the datasheet. No A100 was measured: 90% of its datasheet, by the same ratio.
  [LAT]   Loaded latencies of Hopper (GH100) from published microbenchmarks: Luo et al., "Benchmarking and
          Dissecting the Nvidia Hopper GPU Architecture" (arXiv:2402.13499) and Chips and Cheese, "Nvidia's
          H100: Funny L2, and Tons of Bandwidth" (2023): an L2 hit ~200-270 cycles (the far partition the
          upper end), a DRAM access ~480 ns unloaded pointer chasing and more under a streaming load (queues
          in the memory controllers), ~480-600 ns. Chosen: L2 270 cycles and DRAM 600 ns, the upper ends,
          since the kernels modelled stream at the bandwidth ceiling, where the queues are full. A100: the
          same figures (its clock is lower, its DRAM latency similar), not measured.

The peak FMA rates are at the boost clock `clock_ghz` (1.98 GHz on GH100): a kernel that keeps the SM below it
(power, temperature) is slower than the model by that ratio; the GPU run records the SM clock beside its times.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Device:
    name: str
    slug: str  # directory name of its plots: plots/<slug>-model/
    cc: tuple  # compute capability
    sms: int
    clock_ghz: float  # boost clock the FLOP/s peaks are quoted at
    hbm_gbs: float  # DRAM bandwidth of the datasheet, GB/s (10**9 bytes per second)
    copy_gbs: float  # what a device-to-device copy reaches, reads + writes [COPY]: the model's DRAM ceiling
    fp32_fma_per_clk_sm: int  # FP32 FMA lanes per SM: peak FP32 = 2 * lanes * sms * clock
    fp64_fma_per_clk_sm: int  # FP64 FMA lanes per SM
    issue_per_clk_sm: int  # warp instructions issued per clock per SM (one per sub-partition)
    shared_bytes_per_clk_sm: int  # shared-memory bandwidth per SM [TUNE]
    l1_bytes_per_clk_sm: int  # L1 load bandwidth per SM [TUNE]
    l2_mb: float
    dram_latency_ns: float = 600.0  # loaded DRAM latency [LAT]
    l2_latency_cycles: int = 270  # loaded L2 hit latency [LAT]
    registers_per_sm: int = 65536
    max_registers_per_thread: int = 255
    register_unit: int = 256  # registers are given to a warp in units of this many
    max_threads_per_sm: int = 2048
    max_blocks_per_sm: int = 32
    shared_per_sm: int = 0  # bytes
    shared_per_block_optin: int = 0  # bytes
    shared_reserved_per_block: int = 1024

    @property
    def fp32_gflops(self) -> float:
        return 2 * self.fp32_fma_per_clk_sm * self.sms * self.clock_ghz

    @property
    def fp64_gflops(self) -> float:
        return 2 * self.fp64_fma_per_clk_sm * self.sms * self.clock_ghz

    @property
    def dram_latency_cycles(self) -> float:
        return self.dram_latency_ns * self.clock_ghz

    def peak_gflops(self, itemsize: int) -> float:
        return self.fp32_gflops if itemsize == 4 else self.fp64_gflops

    def as_dict(self) -> dict:
        return {**asdict(self), "fp32_gflops": self.fp32_gflops, "fp64_gflops": self.fp64_gflops,
                "dram_latency_cycles": self.dram_latency_cycles}


# H100 SXM: 2 * 128 * 132 * 1.98 GHz = 66.9 TFLOPS FP32 and 2 * 64 * 132 * 1.98 = 33.5 FP64 [H100].
H100_SXM = Device("NVIDIA H100 SXM", "h100-sxm", (9, 0), sms=132, clock_ghz=1.98, hbm_gbs=3350, copy_gbs=3000,
                  fp32_fma_per_clk_sm=128, fp64_fma_per_clk_sm=64, issue_per_clk_sm=4,
                  shared_bytes_per_clk_sm=128, l1_bytes_per_clk_sm=128, l2_mb=50,
                  shared_per_sm=228 << 10, shared_per_block_optin=227 << 10)
# H200 SXM: the H100's compute with HBM3e at 4.8 TB/s [H200].
H200 = Device("NVIDIA H200", "h200", (9, 0), sms=132, clock_ghz=1.98, hbm_gbs=4800, copy_gbs=4300,
              fp32_fma_per_clk_sm=128, fp64_fma_per_clk_sm=64, issue_per_clk_sm=4,
              shared_bytes_per_clk_sm=128, l1_bytes_per_clk_sm=128, l2_mb=50,
              shared_per_sm=228 << 10, shared_per_block_optin=227 << 10)
# A100 SXM 80GB: 2 * 64 * 108 * 1.41 = 19.5 TFLOPS FP32, 2 * 32 * 108 * 1.41 = 9.7 FP64 [A100].
A100 = Device("NVIDIA A100 SXM 80GB", "a100", (8, 0), sms=108, clock_ghz=1.41, hbm_gbs=2039, copy_gbs=1835,
              fp32_fma_per_clk_sm=64, fp64_fma_per_clk_sm=32, issue_per_clk_sm=4,
              shared_bytes_per_clk_sm=128, l1_bytes_per_clk_sm=128, l2_mb=40,
              shared_per_sm=164 << 10, shared_per_block_optin=163 << 10)

DEVICES = {d.slug: d for d in (H100_SXM, H200, A100)}
#: The architecture each device's kernels are compiled for (sm_XX), as plots.model.resources names it.
ARCH = {d.slug: d.cc[0] * 10 + d.cc[1] for d in DEVICES.values()}


def occupancy(device: Device, registers: int, block: int, shared_bytes: int) -> dict:
    """Theoretical occupancy of a kernel on `device` [CCAP]: resident blocks per SM, limited by threads,
    blocks, registers (per-warp allocation rounded up to `register_unit`) and shared memory; and the
    resulting fraction of the SM's warps."""
    warps = -(-block // 32)
    limits = {"threads": device.max_threads_per_sm // block, "blocks": device.max_blocks_per_sm}
    per_warp = -(-max(registers, 1) * 32 // device.register_unit) * device.register_unit
    limits["registers"] = device.registers_per_sm // (per_warp * warps)
    if shared_bytes:
        limits["shared"] = device.shared_per_sm // (shared_bytes + device.shared_reserved_per_block)
    blocks = max(0, min(limits.values()))
    limiter = min(limits, key=limits.get)
    max_warps = device.max_threads_per_sm // 32
    return {"blocks_per_sm": blocks, "occupancy": blocks * warps / max_warps, "limiter": limiter}
