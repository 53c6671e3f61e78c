"""The model's latency-aware bounds on synthetic kernels whose answer is known by hand: a copy kernel (the
measured copy ceiling, not the datasheet), a kernel with one load in flight per thread and few threads
(Little's law), and a launch one block past a whole wave (the tail doubles the time); the loads in flight read
from SASS. Each fails against the optimistic model (DRAM at the datasheet, latency hidden, no tail)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from plots.model import bounds, devices, oned, sass

H100 = devices.H100_SXM
N = 10**8
NO_TRAFFIC = {"sectors": (0.0, 0.0), "unique_bytes": (0.0, 0.0)}


def _row(registers, bytes_in_flight, fma_per_instruction=1.0):
    mix = {"instructions": 1, "fma": 1, "lds": 0, "sts": 0, "ldg": 0}
    return {"registers": registers, "shared": 0, "dynamic_shared": 0,
            "hot_loop": {"fma_per_instruction": fma_per_instruction, "lds_per_fma": 0.0},
            "life": {"hot": mix, "staging": None, "straight": mix, "outer": mix, "loads_in_flight": 1,
                     "bytes_in_flight": bytes_in_flight}}


def _step(blocks, k=1):
    """A step launching `blocks` blocks of oned.BLOCK threads, one FMA per output, no chunks declared."""
    return SimpleNamespace(variant="synthetic",
                           shape=lambda op, n, k_, dtype: {"blocks": blocks, "fmas": (n - k_ + 1) * k_, "chain": 1})


def test_a_copy_reaches_the_measured_copy_ceiling_not_the_datasheet():
    # 32 registers: 16 blocks of 128 = 2048 threads per SM, 4 bytes in flight each: reads at
    # 132 * 2048 * 4 B / 600 ns = 1.80 TB/s, reads + writes 3.6 TB/s > 3.0: the copy ceiling decides
    p = oned.predict(_row(32, 4), NO_TRAFFIC, H100, "cupy", _step(10**6), "conv1d", N, 1, "float32")
    assert p["bound"] == "dram"
    assert p["gbs"] == pytest.approx(H100.copy_gbs, rel=1e-6)
    assert p["gbs"] <= 0.9 * H100.hbm_gbs  # the optimistic model said the datasheet's 3350
    assert p["hbm_fraction"] == pytest.approx(1.0, rel=1e-6)


def test_one_load_in_flight_and_few_threads_is_bound_by_latency():
    # 255 registers -> 8192 per warp, 32768 per block: 2 blocks = 256 threads per SM, one 4-byte load each
    occ = devices.occupancy(H100, 255, oned.BLOCK, 0)
    assert occ["blocks_per_sm"] == 2
    p = oned.predict(_row(255, 4), NO_TRAFFIC, H100, "cupy", _step(10**6), "conv1d", N, 1, "float32")
    read = 4 * (N + 1)  # x and w; y is written
    by_hand = read / (H100.sms * 256 * 4 / 600e-9)
    assert p["bound"] == "latency_dram"
    assert p["time_s"] == pytest.approx(by_hand, rel=1e-9)
    assert p["hbm_fraction"] < 0.3  # 8 * N bytes in 1.42 ms: 0.56 TB/s; optimistic: the DRAM ceiling
    assert p["optimistic"]["bound"] == "dram"


def test_one_block_past_a_wave_doubles_the_time_of_a_per_sm_bound():
    # an issue-bound kernel (half the issue slots FFMA at k = 511) with blocks = one full wave + 1
    occ = devices.occupancy(H100, 32, oned.BLOCK, 0)
    slots = occ["blocks_per_sm"] * H100.sms
    full = oned.predict(_row(32, 64, 0.5), NO_TRAFFIC, H100, "cupy", _step(slots), "conv1d", N, 511, "float32")
    tail = oned.predict(_row(32, 64, 0.5), NO_TRAFFIC, H100, "cupy", _step(slots + 1), "conv1d", N, 511, "float32")
    assert full["bound"] == tail["bound"] == "issue" and full["tail"] == 1.0
    assert tail["tail"] == pytest.approx(2 / (1 + 1 / slots))
    assert tail["time_s"] / full["time_s"] == pytest.approx(2 / (1 + 1 / slots))
    assert tail["optimistic"]["time_s"] == pytest.approx(full["optimistic"]["time_s"])  # no tail there


def test_waves_and_little():
    assert bounds.waves(10, 10) == (1.0, 1.0)
    assert bounds.waves(11, 10) == (1.1, pytest.approx(2 / 1.1))
    assert bounds.waves(5, 10) == (0.5, 1.0)
    assert bounds.little_time(600, 1, 1, 1, 1e-9) == pytest.approx(600e-9)
    assert bounds.little_time(1, 1, 1, 0, 1e-9) == float("inf")


def test_the_chunk_round_is_its_round_trips_plus_its_issue_or_the_sms_issue():
    c = bounds.chunk_round(2, 4, 100, 3, 1000, 0, H100, 128)
    assert c == {"latency": 3 * 1000 + 100, "issue": 2 * 4 * 100 / 4, "fma": 0}


STAGING = """
.text.k:
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_0:
        /*0010*/                   LDG.E.128.CONSTANT R4, desc[UR4][R2.64] ;
        /*0020*/                   LDG.E.CONSTANT R8, desc[UR4][R2.64+0x10] ;
        /*0030*/                   IADD3 R2, R2, 0x20, RZ ;
        /*0040*/                   STS [R10], R5 ;
        /*0050*/                   STS [R10+0x4], R8 ;
        /*0060*/                   LDG.E.CONSTANT R12, desc[UR4][R2.64] ;
        /*0070*/               @P0 BRA `(.L_x_0) ;
.L_x_1:
        /*0080*/                   FFMA R3, R4, R4, R3 ;
        /*0090*/               @P1 BRA `(.L_x_1) ;
        /*00a0*/                   EXIT ;
"""


def test_loads_in_flight_stop_at_the_first_use_and_count_vector_widths():
    instrs = sass.sass_functions(STAGING)["k"]
    assert sass.loads_in_flight(instrs[1:7]) == (2, 20)  # a 16-byte and a 4-byte load before STS reads R5
    life = sass.chunk_life(instrs, sass.predicated_branches(STAGING))
    assert life["staging"]["bytes_in_flight"] == 20 and life["bytes_in_flight"] == 20
    assert life["hot"]["fma"] == 1


def test_measured_runs_print_the_error_of_each_kernel_against_its_band(tmp_path):
    import json

    from plots.draw import model as model_figures

    p = {"type": "prediction", "backend": "cupy", "variant": "vec", "op": "conv1d", "dtype": "float32", "n": N,
         "k": 3, "device": "h100-sxm", "gflops": 100.0, "bound": "life", "optimistic": {"gflops": 130.0}}
    path = tmp_path / "model-x.jsonl"
    path.write_text(json.dumps({"type": "meta", "kind": "model", "devices": {"h100-sxm": {}}}) + "\n"
                    + json.dumps(p) + "\n")
    row = {"backend": "cupy", "variant": "vec", "op": "conv1d", "n": N, "k": 3, "device": "gpu", "status": "ok",
           "dtype": "float32", "gflops": 80.0}
    run = SimpleNamespace(meta={"gpu": {"name": "NVIDIA H100 80GB HBM3"}}, rows=[row])
    (line,) = model_figures.errors(path, run)
    assert "measured 80 GFLOP/s" in line and "model 100 (life) to 130" in line and line.endswith("0.80")
    assert model_figures.errors(path, SimpleNamespace(meta={"gpu": {"name": "NVIDIA H200"}}, rows=[row])) == []


def test_a_layer_gemm_launch_one_tile_past_a_wave_pays_a_second_round_of_chunks():
    from plots.model import layer

    # 2 resident blocks of 4 warps, 10 chunks per tile, 1 round trip at L2 latency (nothing from DRAM),
    # 100 instructions per warp per chunk: one block's chunk is 270 + 100 cycles, the SM's issue for both 200
    slots = 2 * H100.sms
    one = layer.gemm_life(H100, slots, 2, 4, 10, 100, 1, 0, 128, 0.0)
    assert one["life"] == pytest.approx(10 * (H100.l2_latency_cycles + 100) / (H100.clock_ghz * 1e9))
    tail = layer.gemm_life(H100, slots + 1, 2, 4, 10, 100, 1, 0, 128, 0.0)
    assert tail["life"] == pytest.approx(2 * one["life"]) and tail["life_parts"]["tiles_per_slot"] == 2
    # all from DRAM: the round trip is DRAM's latency
    dram = layer.gemm_life(H100, slots, 2, 4, 10, 100, 1, 0, 128, 1.0)
    assert dram["life"] == pytest.approx(10 * (H100.dram_latency_cycles + 100) / (H100.clock_ghz * 1e9))


def test_the_layer_targets_carry_the_latency_aware_share_and_its_band():
    from plots.model import layer, predict

    p = layer.predict("cupy", "gemm", layer.BACKWARD, layer.SHAPES[predict.LAYER_SHAPE], "float32", H100, 128)
    assert p["time_s"] >= p["optimistic"]["time_s"] > 0
    assert p["peak_fraction"] <= p["optimistic"]["peak_fraction"] <= 1.0
    rows = predict.layer_targets([{**p, "shape": predict.LAYER_SHAPE}], H100.slug)
    assert rows and rows[0]["band"].startswith(f"{p['peak_fraction']:.1%} - ")
