"""Which CPU this is: its model, vector ISA and CPUID, named so that two different CPUs never share a name
(the folder of their results, the layer choice table `make tune` writes for them)."""

from __future__ import annotations

import functools
import os
import platform
import re
from pathlib import Path


def slug(text: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (for file names)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


#: /proc/cpuinfo flags recorded (the vector ISA decides how fast a direct kernel can be), widest first.
ISA_FLAGS = ("avx512f", "avx2", "fma", "neon")
#: A CPU's vector ISA in names: the widest of ISA_FLAGS it has.
ISA_NAMES = {"avx512f": "AVX-512", "avx2": "AVX2", "neon": "NEON"}


def cpu_isa(info: dict) -> str:
    """The widest vector ISA of a CPU record ("AVX-512", "AVX2", "NEON"), else its machine ("x86_64")."""
    return next((ISA_NAMES[f] for f in ISA_NAMES if f in info.get("isa", ())), info.get("machine") or "cpu")


def cpu_name(info: dict) -> str:
    """'AMD EPYC (2 cores, AVX2)': the OS's model name, the cores used and the vector ISA."""
    return f"{info['model']} ({info['usable_cores']} cores, {cpu_isa(info)})"


def cpu_slug(info: dict) -> str:
    """'amd-epyc-avx512-f25m17-2c': the folder name of a CPU's results and figures. The OS names different
    generations alike ("AMD EPYC" for Zen 3 with AVX2 and Zen 4 with AVX-512), so the vector ISA and the CPUID
    family and model join the name: two different CPUs never share a folder."""
    cpuid = f"f{info['family']}m{info['model_id']}" if info.get("family") and info.get("model_id") else ""
    return slug(f"{info['model']} {cpu_isa(info)} {cpuid} {info['usable_cores']}c")


@functools.cache
def cpu_info() -> dict:
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    isa = [f for f in ISA_FLAGS if f in flags]
    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem = None
    info = {"model": model, "family": fields.get("cpu family"), "model_id": fields.get("model"),
            "logical_cores": cores, "usable_cores": usable, "isa": isa, "memory_bytes": mem,
            "machine": platform.machine()}
    return {"name": cpu_name(info), "slug": cpu_slug(info), **info}
