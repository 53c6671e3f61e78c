"""Reading a results file: tables of times, the direct-vs-FFT crossover k*, speedups, a summary.

Used by the plots (`python -m plots draw`) and by `python -m plots bench` for its closing summary. Only
results with status "ok" (checked against the reference, then timed) are used; times are medians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kernels.fft_choice import MIN_SUM
from plots.bench.results import Run

#: The n the summary quotes speedups at, when measured (else the largest n measured).
SUMMARY_N = 10**6


@dataclass
class Table:
    """The ok results of one (device, op, dtype) in one run."""

    run: Run
    device: str
    op: str
    dtype: str
    rows: list
    info: dict = field(default_factory=dict)  # impl -> its first row (kind, method, family, ...)
    t: dict = field(default_factory=dict)  # (impl, n, k) -> median seconds

    def __post_init__(self):
        for r in self.rows:
            self.info.setdefault(r["impl"], r)
            self.t[(r["impl"], r["n"], r["k"])] = r["timing"]["median"]

    @property
    def impls(self) -> list[str]:
        """Kernels first (by backend, default variant first), then baselines."""
        def key(i):
            r = self.info[i]
            return (r["kind"] != "kernel", r["family"], not r.get("default"), i)
        return sorted(self.info, key=key)

    @property
    def ns(self) -> list[int]:
        return sorted({r["n"] for r in self.rows})

    @property
    def ks(self) -> list[int]:
        return sorted({r["k"] for r in self.rows})

    def kernels(self) -> list[str]:
        return [i for i in self.impls if self.info[i]["kind"] == "kernel"]

    def baselines(self) -> list[str]:
        return [i for i in self.impls if self.info[i]["kind"] == "baseline"]

    def time(self, impl, n, k) -> float | None:
        return self.t.get((impl, n, k))

    def best(self, impls, n, k) -> tuple[str | None, float | None]:
        """(fastest of `impls` at (n, k), its time); (None, None) if none was measured."""
        times = [(self.t[(i, n, k)], i) for i in impls if (i, n, k) in self.t]
        if not times:
            return None, None
        t, i = min(times)
        return i, t

    def best_baseline(self, n, k):
        return self.best(self.baselines(), n, k)

    def speedup(self, impl, n, k) -> float | None:
        """Time of the best baseline / time of `impl` (> 1: `impl` is faster)."""
        t = self.time(impl, n, k)
        _, tb = self.best_baseline(n, k)
        return tb / t if t and tb else None

    def gflops(self, impl, n, k) -> float | None:
        r = self.row(impl, n, k)
        return r["flops"] / r["timing"]["median"] / 1e9 if r else None

    def gbs(self, impl, n, k) -> float | None:
        r = self.row(impl, n, k)
        return r["min_bytes"] / r["timing"]["median"] / 1e9 if r else None

    def row(self, impl, n, k) -> dict | None:
        for r in self.rows:
            if r["impl"] == impl and r["n"] == n and r["k"] == k:
                return r
        return None

    def methods(self, method: str, family: str | None = None) -> list[str]:
        return [i for i in self.impls if self.info[i]["method"] == method
                and (family is None or self.info[i]["family"] == family)]

    def runs_direct(self, impl: str, n: int, k: int) -> bool:
        """True where a playground kernel of method "fft" runs its direct kernel: sums shorter than MIN_SUM
        terms (kernels.fft_choice: as accurate and faster there), k terms for the forward op, n - k + 1 for
        the weight gradient."""
        info = self.info[impl]
        if info["kind"] != "kernel" or info["method"] != "fft":
            return False
        terms = {"conv1d": k, "conv1d_input_grad": k, "conv1d_weight_grad": n - k + 1}.get(self.op)
        return terms is not None and terms < MIN_SUM


def tables(run: Run, device: str) -> list[Table]:
    """One table per (op, dtype) measured on `device`, in the order they appear."""
    groups: dict = {}
    for r in run.rows:
        if r.get("status") == "ok" and r["device"] == device:
            groups.setdefault((r["op"], r["dtype"]), []).append(r)
    return [Table(run, device, op, dtype, rows) for (op, dtype), rows in groups.items()]


# --- crossover ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Crossover:
    """Where FFT starts to win, as the interval between two measured k: it loses (or ties) at `last_direct`
    and wins at `first_k` and every larger k measured; the interpolated `k_star` lies between them and is no
    more precise than that interval."""

    family: str  # a backend or library, or "all" (best direct vs best FFT of everything)
    n: int
    k_star: float | None  # interpolated k where FFT becomes faster for good; None: it never does
    first_k: int | None  # smallest measured k from which FFT wins at every larger k
    direct: str  # what the two sides are
    fft: str
    ks: tuple = ()

    @property
    def last_direct(self) -> int | None:
        """The largest measured k below first_k (where direct still wins); None when FFT wins everywhere."""
        below = [k for k in self.ks if self.first_k is not None and k < self.first_k]
        return below[-1] if below else None

    def describe(self) -> str:
        if self.k_star is None:
            return f"FFT never wins up to k={self.ks[-1]}" if self.ks else "no data"
        if self.last_direct is None:
            return f"FFT wins at every k measured (k* <= {self.first_k})"
        return f"FFT wins from k={self.first_k} on: {self.last_direct} < k* <= {self.first_k}"


def crossover_k(ks, t_direct: dict, t_fft: dict) -> tuple[float | None, int | None]:
    """(k*, first k) where t_fft < t_direct holds from k* on, interpolating log(t_fft/t_direct) in log k."""
    ks = [k for k in sorted(ks) if k in t_direct and k in t_fft]
    if not ks:
        return None, None
    r = [math.log(t_fft[k] / t_direct[k]) for k in ks]
    i = len(ks)
    while i > 0 and r[i - 1] < 0:
        i -= 1
    if i == len(ks):
        return None, None
    if i == 0:
        return float(ks[0]), ks[0]
    lo, hi = math.log(ks[i - 1]), math.log(ks[i])
    frac = r[i - 1] / (r[i - 1] - r[i])
    return math.exp(lo + frac * (hi - lo)), ks[i]


def crossovers(table: Table, n: int) -> list[Crossover]:
    """k* for every family with both direct and FFT implementations, and for all of them together."""
    out = []
    families = sorted({table.info[i]["family"] for i in table.impls})
    groups = [(f, table.methods("direct", f), table.methods("fft", f)) for f in families]
    groups.append(("all", table.methods("direct"), table.methods("fft")))
    for family, direct, fft in groups:
        if not direct or not fft:
            continue
        # an FFT variant where it runs its direct kernel counts as direct, not as an FFT winning
        td = {k: t for k in table.ks if (t := table.best(
            direct + [i for i in fft if table.runs_direct(i, n, k)], n, k)[1]) is not None}
        tf = {k: t for k in table.ks if (t := table.best(
            [i for i in fft if not table.runs_direct(i, n, k)], n, k)[1]) is not None}
        tf.update({k: math.inf for k in td.keys() - tf.keys()  # no FFT ran at k: it did not win there
                   if any(table.runs_direct(i, n, k) for i in fft if (i, n, k) in table.t)})
        ks = tuple(k for k in table.ks if k in td and k in tf)
        if len(ks) < 2:
            continue
        k_star, first = crossover_k(ks, td, tf)
        name = (lambda xs: xs[0] if len(xs) == 1 else f"best of {len(xs)}")
        out.append(Crossover(family, n, k_star, first, name(direct), name(fft), ks))
    return out


# --- summary ---------------------------------------------------------------------------------------------

def best_ceilings(run: Run, device: str) -> dict:
    """{('flops', 'float32'): ceiling record, ('bandwidth', 'dram'): ...}: the best of each kind (the
    ceilings are measured at the start and at the end of a run; load from other processes lowers them)."""
    out = {}
    for c in run.ceilings:
        if c["device"] != device:
            continue
        key = (c["kind"], c.get("dtype") or c.get("level"))
        if key not in out or c["value"] > out[key]["value"]:
            out[key] = c
    return out


def ceiling_values(run: Run, device: str) -> dict:
    """{('flops', 'float32'): GFLOP/s, ('bandwidth', 'dram'): GB/s, ...}: the best of each kind."""
    return {key: c["value"] for key, c in best_ceilings(run, device).items()}


# --- load: the ceilings at the start of a run against those at its end -----------------------------

#: Ceilings of one kind measured at the start and at the end of a run that differ by more than this factor
#: (1.15: 15%) mean that other work loaded the machine during the run; the summary and the figures say so.
LOAD_MARGIN = 1.15


def drift(records: list[dict], device: str) -> list[dict]:
    """Per ceiling measured both at the start and at the end of a run on `device`: {what, start, end, unit,
    factor}, factor = the larger over the smaller value (1.0: unchanged), largest first."""
    seen: dict = {}
    for c in records:
        if c.get("device") == device and c.get("when") in ("start", "end"):
            what = f"{c['kind']} {c.get('dtype') or c.get('level')}"
            seen.setdefault(what, {})[c["when"]] = c
    out = []
    for what, pair in seen.items():
        if {"start", "end"} <= set(pair) and min(pair["start"]["value"], pair["end"]["value"]) > 0:
            start, end = pair["start"]["value"], pair["end"]["value"]
            out.append({"what": what, "start": start, "end": end, "unit": pair["start"]["unit"],
                        "factor": max(start, end) / min(start, end)})
    return sorted(out, key=lambda d: -d["factor"])


def load_note(records: list[dict], device: str) -> str | None:
    """One line saying that the machine was loaded and by how much, when a ceiling moved by more than
    LOAD_MARGIN between the start and the end of the run; None when none did (or one was measured once)."""
    moved = [d for d in drift(records, device) if d["factor"] > LOAD_MARGIN]
    if not moved:
        return None
    w = moved[0]
    return (f"machine loaded during the run: {w['what']} ceiling {w['start']:.0f} {w['unit']} at the start, "
            f"{w['end']:.0f} at the end ({w['factor']:.1f}x apart; margin {LOAD_MARGIN}x): times may be "
            f"up to {w['factor']:.1f}x slower than on a quiet machine")


def summary(run: Run, device: str) -> list[str]:
    """Markdown lines: device, ceilings, crossover k*, best implementation per (n, k), kernel vs baselines."""
    name = run.device_name(device)
    meta = run.meta
    lines = [f"# Benchmark summary: {name}", "",
             f"Results: `{run.path.name}` ({meta.get('date')}, preset {meta.get('preset')}, "
             f"git {(meta.get('git') or {}).get('commit', '')[:10]}). Times are medians; kernels "
             f"{'with' if meta.get('out_preallocated') else 'without'} preallocated `out=`, baselines "
             "allocate.", ""]
    note = load_note(run.ceilings, device)
    lines += [f"**{note[0].upper()}{note[1:]}.**" if note else
              f"Quiet machine: every ceiling within {LOAD_MARGIN}x between the start and the end of the run.", "",
              "## Measured ceilings", ""]
    for (kind, what), c in best_ceilings(run, device).items():
        lines.append(f"- {kind} {what}: **{c['value']:.1f} {c['unit']}** (fastest call; median "
                     f"{c['value_median']:.1f}; {c['method']}; measured at the {c.get('when', 'start')} "
                     "of the run)")
    for table in tables(run, device):
        lines += ["", f"## {table.op}, {table.dtype}", ""]
        for n in table.ns[-2:]:
            for c in crossovers(table, n):
                lines.append(f"- crossover n={n:.0e}, {c.family} ({c.direct} vs {c.fft}): {c.describe()}")
        ratio_n = SUMMARY_N if SUMMARY_N in table.ns else table.ns[-1]
        ks = [k for k in table.ks if any(table.time(i, ratio_n, k) is not None for i in table.kernels())]
        if ks:
            lines += ["", f"Speedup over the best baseline at n={ratio_n:.0e} (time of best baseline / time; "
                          "> 1 is faster):", "",
                      "| implementation | " + " | ".join(f"k={k}" for k in ks) + " |",
                      "|---|" + "---|" * len(ks)]
            for impl in table.kernels():
                cells = []
                for k in ks:
                    s = table.speedup(impl, ratio_n, k)
                    cells.append("-" if s is None else f"{s:.2f}")
                tag = " (default)" if table.info[impl].get("default") else ""
                lines.append(f"| {impl}{tag} | " + " | ".join(cells) + " |")
            cells = []
            for k in ks:
                b, _ = table.best_baseline(ratio_n, k)
                cells.append(b or "-")
            lines.append("| best baseline | " + " | ".join(cells) + " |")
        lines += ["", "Fastest implementation per (n, k):", "",
                  "| n \\ k | " + " | ".join(str(k) for k in table.ks) + " |",
                  "|---|" + "---|" * len(table.ks)]
        for n in table.ns:
            cells = []
            for k in table.ks:
                i, _ = table.best(table.impls, n, k)
                cells.append(i or "")
            lines.append(f"| {n:.0e} | " + " | ".join(cells) + " |")
    return lines
