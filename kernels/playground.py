"""Your own kernels: declare them in a file of your own, check them, benchmark them.

    # mine.py, anywhere on disk
    import kernels
    from numba import njit

    @njit
    def correlate(x, w, y):                       # y[j] = sum_i x[j+i] w[i]
        ...

    @kernels.kernel("conv1d", backend="numba_cpu", name="mine")
    def conv1d_mine(p, x, w, y):
        '''my first kernel: one output per loop iteration'''
        correlate(x, w[::-1].copy() if p.flip else w, y)

    $ python -m kernels check mine.py             # the edge-size matrix, a verdict per case
    $ python -m kernels bench mine.py             # timed beside the built-in variants and baselines
    $ python -m kernels new conv1d --lang numba   # a starter file that passes check as written

An implementation has the signature of every built-in one, `impl(p, *inputs, *outs)`: `p` is the
validated problem (p.n, p.k, p.m, p.dtype, p.flip, ...; the layer: p.N, p.C_in, p.L_out, p.stride, ...),
inputs are contiguous arrays of the backend's kind and outputs are preallocated (NaN-poisoned when
checked). It validates and allocates nothing. A file may implement any subset of the ops; `check`
covers the ops it declares and nothing else. CUDA C kernels are declared with `gpu.cupy.playground.cuda_c`.

How `check` judges a call (`trial`, in a child process watched by `kernels.isolate`, so that a crash or
a hang is one failed case and never the checker's end):

    inputs     fresh random values per case (`Case.rng`: the label and the seed decide them); the float64
               reference is computed from a snapshot, before the call; after it every input must still
               equal its snapshot (a kernel that writes an input fails as "mutation", naming it)
    bounds     on host memory (numba_cpu, the CUDA C emulator) every input and output sits flush against a
               PROT_NONE page (`kernels.guard`; before the arrays in the emulator's reverse thread order,
               after them otherwise): one element read or written past an array kills the call with
               SIGSEGV, reported as "bounds"; numba's CUDA simulator raises IndexError past an array
    outputs    poisoned with NaN and passed as out=; each is compared with the reference ("values"): the
               first unwritten (NaN) element, the first other non-finite one, and the worst finite error
    time       each call has `limit` seconds (JIT compilation of its first call included), then it is
               killed ("time"); after MAX_FAILURES calls of one kernel that crashed or hung, its remaining
               cases are not run
    launches   a GPU kernel's capped case (`kernels.cases`) cuts its grid below one thread per output,
               unless its launch rule gives one thread per output at every size (checked, then said)
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import json
import os
import secrets
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kernels import cases, compare, guard, isolate, registry
from kernels.spec import OPS

#: Thread orders an emulated CUDA C kernel is checked in (a race shows as order-dependent results).
EMULATED_ORDERS = ("forward", "reverse")
#: Seconds one call may take by default (its JIT compilation included); `check --timeout` sets another.
DEFAULT_LIMIT = 60.0
#: Calls of one kernel that may crash or hang before its remaining cases are left out.
MAX_FAILURES = 2
#: The kinds of fault a failed case is counted under, in the order the summary lists them.
KINDS = ("values", "bounds", "mutation", "time", "crash", "error")
#: Launch control of each GPU backend's playground kernels (`launches(cap, dry)`, `caps_grid(impl)`).
LAUNCH_CONTROL = {"cupy": "gpu.cupy.playground", "numba_cuda": "gpu.numba_cuda.playground"}
ROOT = Path(__file__).resolve().parents[1]


def kernel(op: str, *, backend: str, name: str, method: str = "direct", default: bool = False):
    """Register the decorated `impl(p, *inputs, *outs)` as variant `name` of `op` on `backend`.

    `method` ("direct", "fft" or "auto") says how it computes: benchmarks and plots group by it.
    """
    if op not in OPS:
        raise KeyError(f"op: expected one of {sorted(OPS)}, got {op!r}")
    target = registry.backend(backend)  # KeyError listing the backends for an unknown name
    if name in target.impls.get(op, {}):
        raise ValueError(f"name: {backend} already has a variant {name!r} of {op}; pick another name")

    def register(fn):
        if not (fn.__doc__ or "").strip():
            fn.__doc__ = f"{name} (a kernel of {getattr(fn, '__module__', 'a user file')})"
        registered = target.impl(op, name, default=default, method=method)(fn)
        DECLARED.append(Declared(backend, op, name))
        return registered

    return register


@dataclass(frozen=True)
class Declared:
    """One implementation a file registered."""

    backend: str
    op: str
    variant: str

    def __str__(self):
        return f"{self.op} {self.backend}:{self.variant}"


#: Every implementation `kernel` registered in this process, in order: a file's are those its import adds. (Only
#: the backends a file declares for get imported: all four take 2 s, most of a `check` child's start.)
DECLARED: list[Declared] = []


class LoadError(ValueError):
    """The file cannot be loaded (a syntax error, an import error, an exception at import)."""


def load_file(path) -> list[Declared]:
    """Import the Python file at `path` and return the implementations it registered, in a stable order.

    FileNotFoundError or ValueError (LoadError when its code fails) name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FILE: no such file: {path}")
    if path.suffix != ".py":
        raise ValueError(f"FILE: expected a Python file (.py) that declares kernels, got {path.name}")
    before = len(DECLARED)
    module_name = f"_playground_{path.stem}_{abs(hash(path.resolve())) % 10**8}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.resolve().parent))  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise LoadError(f"FILE: {e.filename}:{e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:  # the user's code: any exception at import is the file's fault
        raise LoadError(f"FILE: {path.name} fails to load: {_where(e, path)}{type(e).__name__}: {e}") from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    declared = sorted(set(DECLARED[before:]), key=lambda d: (list(OPS).index(d.op), d.backend, d.variant))
    if not declared:
        raise ValueError(f"FILE: {path.name} declares no kernel; decorate an implementation with "
                         "@kernels.kernel(op, backend=..., name=...) or use gpu.cupy.playground.cuda_c(...)")
    return declared


def _where(e: BaseException, path: Path) -> str:
    """'file:line: ' of the deepest frame of `e` in the user's file (or its folder), else ''."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).parent == path.resolve().parent]
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}: " if frames else ""


def select(declared, *, ops=None, variants=None, backends=None) -> list[Declared]:
    """The declared implementations the --op/--variant/--backend filters keep (ValueError naming the flag
    when one matches nothing the file declares)."""
    for flag, attr, wanted in (("--op", "op", ops), ("--variant", "variant", variants),
                               ("--backend", "backend", backends)):
        have = sorted({getattr(d, attr) for d in declared})
        if wanted and not set(wanted) & set(have):
            raise ValueError(f"{flag}: the file declares {have}, got {wanted}")
        declared = [d for d in declared if not wanted or getattr(d, attr) in wanted]
    return declared


# --- the verdict on one case ---------------------------------------------------------------------

@dataclass
class CaseResult:
    """The verdict on one implementation at one case of the matrix."""

    declared: str
    case: str
    mode: str = ""  # "" or the emulated thread order
    ok: bool = False
    kind: str = ""  # what failed: one of KINDS, or "not run"
    max_ratio: float = 0.0  # worst finite |err| / tolerance
    max_err: float = 0.0
    worst: str = ""  # output and index of the worst finite error
    unwritten: int = 0  # NaN elements where the reference has none (outputs are poisoned with NaN)
    first_unwritten: str = ""
    nonfinite: int = 0  # other non-finite elements where the reference is finite
    first_nonfinite: str = ""
    criterion: str = "elementwise"
    error: str = ""  # what went wrong, when it is not a value
    note: str = ""  # what the case did besides the call (a capped grid, a launch promise)

    def line(self) -> str:
        head = f"{'pass' if self.ok else 'FAIL'}  {self.declared}  {self.case}{' ' + self.mode if self.mode else ''}"
        head += f" [{self.note}]" if self.note else ""
        if self.error:
            return f"{head}: {self.kind}: {self.error}"
        parts = [f"worst finite error {self.max_err:.3g} ({self.max_ratio:.3g}x tolerance, {self.criterion})"
                 + (f" at {self.worst}" if self.worst else "")]
        if self.unwritten:
            parts.append(f"{self.unwritten} unwritten (NaN), the first at {self.first_unwritten}")
        if self.nonfinite:
            parts.append(f"{self.nonfinite} non-finite, the first at {self.first_nonfinite}")
        return f"{head}: {'values: ' if not self.ok else ''}{'; '.join(parts)}"

    def as_dict(self) -> dict:
        backend_op, _, variant = self.declared.rpartition(":")
        op, _, backend = backend_op.partition(" ")
        return {"backend": backend, "op": op, "variant": variant, **self.__dict__}


def _names(op: str) -> list[str]:
    """The op's positional parameter names, in the order of its arguments (x, w, b, grad_y, ...)."""
    return [p.name for p in inspect.signature(OPS[op].parse).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def judge(op: str, got, reference: compare.Reference, method: str) -> dict:
    """The values verdict of outputs `got` (host arrays) as CaseResult fields."""
    verdict = reference.check(got[0] if OPS[op].single else tuple(got), method)
    fields = {"ok": verdict.ok, "max_ratio": verdict.max_ratio, "max_err": verdict.max_err,
              "criterion": verdict.criterion, "unwritten": 0, "nonfinite": 0, "first_unwritten": "",
              "first_nonfinite": ""}
    worst = max(verdict.mismatches, key=lambda m: m.max_ratio)
    if worst.max_ratio > 0:
        fields["worst"] = f"{worst.output}{list(worst.worst_index)}"
    for name, g, r in zip(OPS[op].outputs, got, reference.outputs):
        for key, value in compare.faults(name, g, r).items():
            if key.startswith("first_"):
                fields[key] = fields[key] or value
            else:
                fields[key] += value
    if not verdict.ok:
        fields["kind"] = "values"
    return fields


def changed_inputs(op: str, before, after) -> str:
    """'' when every input array equals its snapshot, else which one changed and where."""
    for name, b, a in zip(_names(op), before, after):
        if not isinstance(b, np.ndarray):
            continue
        a = compare.to_host(a)
        diff = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        if diff.any():
            i = np.unravel_index(int(np.argmax(diff)), diff.shape)
            return (f"the kernel wrote its input {name}: {int(diff.sum())} element(s) changed, the first "
                    f"{name}{list(map(int, i))}: {float(b[i]):.6g} -> {float(a[i]):.6g}")
    return ""


def _options_for(fn, state: str) -> dict:
    """The matrix's small blocks for implementations that take launch options (**options or block=)."""
    params = inspect.signature(fn).parameters.values()
    takes = any(p.kind == p.VAR_KEYWORD or p.name == "block" for p in params)
    return dict(cases.SMALL_BLOCKS.get(state, {})) if takes else {}


@contextlib.contextmanager
def _env(name: str, value: str | None):
    """os.environ[name] = value inside the block (nothing changes when value is None)."""
    if value is None:
        yield
        return
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


class Subject:
    """One declared implementation as the child calls it: its public function, array kind, launch control."""

    def __init__(self, d: Declared):
        self.d, self.state = d, registry.status(d.backend).state
        b = registry.backend(d.backend)
        self.method, self.arrays, self.impl = b.method(d.op, d.variant), b.arrays, b.impls[d.op][d.variant]
        self.options = _options_for(self.impl, self.state)
        self.fn = registry.get(d.op, d.backend, d.variant, **self.options)
        self.host = self.arrays.name == "numpy.ndarray"
        control = LAUNCH_CONTROL.get(d.backend)
        self.control = importlib.import_module(control) if control else None
        self._covers = None  # the launch promise, probed on the capped case

    def modes(self) -> tuple:
        return EMULATED_ORDERS if self.state == "emulated" else ("",)

    def call(self, args, kwargs, side: str, arena: guard.Arena):
        """Outputs (host copies) and the inputs as the kernel saw them (host copies), after one call on
        guarded copies of `args` with NaN-poisoned, guarded outputs passed as out=."""
        op = OPS[self.d.op]
        p, _ = op.parse(*args, **kwargs)
        if self.host:
            inputs = tuple(arena.guarded(a, side) if isinstance(a, np.ndarray) else a for a in args)
            outs = tuple(arena.guarded(np.full(s, np.nan, p.dtype), side) for s in op.out_shapes(p))
        else:
            inputs = tuple(self.arrays.prepare(a) if isinstance(a, np.ndarray) else a for a in args)
            outs = tuple(self.arrays.empty(s, p.dtype) for s in op.out_shapes(p))
            for o in outs:
                self.arrays.fill_nan(o)
        self.fn(*inputs, out=outs[0] if op.single else outs, **kwargs)
        host = [np.array(compare.to_host(o)) for o in outs]
        seen = [np.array(compare.to_host(a)) if isinstance(a, np.ndarray) or not self.host and hasattr(a, "shape")
                else a for a in inputs]
        return host, seen

    def covers(self, block_hint: int) -> tuple[bool, str]:
        """(True, note) when the launch rule gives one thread per output past the 65535-block cap (a dry
        run: the launches are recorded, not run), else (False, note)."""
        if self._covers is None:
            if self.control.caps_grid(self.impl):
                self._covers = (False, "the launch rule caps the grid at 65535 blocks")
            else:
                sizes = cases.promise_sizes(self.d.op, self.options.get("block", block_hint))
                args, kwargs = OPS[self.d.op].make_args(np.random.default_rng(0), np.float32, **sizes)
                p, _ = OPS[self.d.op].parse(*args, **kwargs)
                count = int(np.prod(OPS[self.d.op].out_shapes(p)[0]))
                inputs = tuple(self.arrays.prepare(a) if isinstance(a, np.ndarray) else a for a in args)
                outs = tuple(self.arrays.empty(s, p.dtype) for s in OPS[self.d.op].out_shapes(p))
                with self.control.launches(dry=True) as seen:
                    self.fn(*inputs, out=outs[0] if len(outs) == 1 else outs, **kwargs)
                threads = max((b * t for b, t in seen), default=0)
                self._covers = (threads >= count, f"at {count:,} outputs its largest launch has {threads:,} threads")
        return self._covers


def trial(subject: Subject, case: cases.Case, mode: str, seed: int) -> dict:
    """One case of one implementation: CaseResult fields (see the module docstring)."""
    op = subject.d.op
    args, kwargs = case.args(case.rng(seed))
    snapshot = tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args)
    reference = compare.Reference(op, snapshot, kwargs).compute()  # before the call
    result, cap = {"note": ""}, None
    if case.blocks is not None:
        covers, why = subject.covers(block_hint=1024)
        cap = None if covers else case.blocks
        result["note"] = (f"grid capped at {case.blocks} blocks: {why}" if cap else
                          f"not capped: the launch rule gives one thread per output ({why})")
    arena = guard.Arena()
    try:
        with _env("KERNELS_EMU_ORDER", mode or None), \
                (subject.control.launches(cap=cap) if cap else contextlib.nullcontext()):
            try:
                got, seen = subject.call(args, kwargs, "start" if mode == "reverse" else "end", arena)
            except IndexError as e:  # numba's CUDA simulator: an index past an array
                return result | {"kind": "bounds", "error": f"an index past an array: {_short(e)}"}
            except Exception as e:  # the call's own error is that case's failure, not the run's
                return result | {"kind": "error", "error": f"{type(e).__name__}: {_short(e)}"}
    finally:
        arena.release()
    result |= judge(op, got, reference, subject.method)
    mutated = changed_inputs(op, snapshot, seen)
    if mutated:
        result |= {"ok": False, "kind": "mutation", "error": mutated}
    return result


def _short(e: BaseException, limit: int = 600) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + " ..."


# --- the child process -----------------------------------------------------------------------------

def plan(declared, subjects, spec: dict) -> list[tuple]:
    """(index, subject, case, mode) of every call, kernels in file order, cases sorted by size."""
    wanted = set(spec.get("cases") or ())
    calls = []
    for d in declared:
        s = subjects[d]
        todo = cases.cases(d.op, s.state)
        if wanted:
            todo = [c for c in todo if str(c) in wanted]
        calls += [(len(calls) + j, s, c, m) for j, (c, m) in enumerate((c, m) for c in todo for m in s.modes())]
    return calls


def child_main(argv=None):
    """The child of `check_file` (argv: SPEC as JSON): load the file, report its kernels and plan, run the calls from
    spec["start"] on, each between begin and end reports on the isolate channel."""
    spec = json.loads((argv or sys.argv[1:])[0])
    channel = isolate.Channel.from_env()
    try:
        declared = select(load_file(spec["file"]), ops=spec.get("ops"), variants=spec.get("variants"),
                          backends=spec.get("backends"))
        for d in declared:
            st = registry.status(d.backend)
            if not st.usable:
                raise ValueError(f"{d}: backend {d.backend} is unavailable here ({st.reason})")
        subjects = {d: Subject(d) for d in declared}
    except (FileNotFoundError, ValueError, KeyError) as e:
        channel.send(fatal=e.args[0] if e.args else str(e), usage=True)
        return
    calls = plan(declared, subjects, spec)
    if spec.get("cases") and not calls:
        channel.send(fatal=f"--case: no case of the file's kernels is called {spec['cases']}; labels look like "
                           f"{str(cases.cases(declared[0].op)[0])!r}", usage=True)
        return
    if spec["start"] == 0:
        channel.send(declared=[{"name": str(d), "state": subjects[d].state, "resources": _resources(subjects[d])}
                               for d in declared])
        channel.send(plan=[{"declared": str(s.d), "case": str(c), "mode": m} for _, s, c, m in calls])
    for i, subject, case, mode in calls:
        if i < spec["start"]:
            continue
        channel.send(begin=i, limit=spec["limit"])
        try:
            result = trial(subject, case, mode, spec["seed"])
        except Exception as e:  # the checker's own failure on this case: reported, and the next case runs
            result = {"kind": "error", "error": f"checking failed: {type(e).__name__}: {_short(e)}"}
        channel.send(end=i, **result)


def _resources(subject: Subject) -> list[str]:
    report = getattr(subject.impl, "resources", None)
    return report() if report else []


# --- the parent ------------------------------------------------------------------------------------

@dataclass
class Report:
    """What `check_file` found: the kernels, every case's result in plan order, the seed."""

    declared: list = field(default_factory=list)  # {"name", "state", "resources"}
    results: list = field(default_factory=list)
    seed: int = 0
    restarts: int = 0

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]

    def counts(self) -> dict[str, int]:
        return {k: sum(r.kind == k for r in self.failed) for k in (*KINDS, "not run")}


def check_file(path, *, ops=None, variants=None, backends=None, case_labels=None, seed=None,
               limit: float = DEFAULT_LIMIT, env=None) -> Report:
    """Check the kernels FILE declares, each call in a watched child process (`kernels.isolate`).

    ValueError (the file's own message) when it does not load or the filters select nothing."""
    seed = secrets.randbits(32) if seed is None else seed
    spec = dict(file=str(Path(path).resolve()), ops=ops, variants=variants, backends=backends,
                cases=case_labels, seed=seed, limit=limit)
    env = dict(env if env is not None else os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    report, state = Report(seed=seed), isolate.Watch()
    failures: dict[str, int] = {}
    ended: dict[int, CaseResult] = {}

    def command(start):
        return [sys.executable, "-c", "from kernels.playground import child_main; child_main()",
                json.dumps({**spec, "start": start})]

    def calls():
        return next((m["plan"] for m in state.info if "plan" in m), [])

    def resume(outcome) -> int | None:
        who = calls()[outcome.index]["declared"]
        failures[who] = failures.get(who, 0) + 1
        if failures[who] < MAX_FAILURES:
            return outcome.index + 1
        later = [i for i, c in enumerate(calls()) if i > outcome.index and c["declared"] != who]
        return later[0] if later else None

    try:
        for outcome in isolate.watch(command, env=env, resume=resume, state=state):
            c = calls()[outcome.index]
            r = CaseResult(c["declared"], c["case"], c["mode"])
            if outcome.end is not None:
                fields = {k: v for k, v in outcome.end.items() if k in CaseResult.__dataclass_fields__}
                r = CaseResult(c["declared"], c["case"], c["mode"], **fields)
            else:
                r.kind, r.error = _failure(outcome)
            ended[outcome.index] = r
    except isolate.Fatal as e:
        raise ValueError(str(e)) from None
    report.declared = next((m["declared"] for m in state.info if "declared" in m), [])
    report.restarts = state.restarts
    for i, c in enumerate(calls()):
        report.results.append(ended.get(i) or CaseResult(
            c["declared"], c["case"], c["mode"], kind="not run",
            error=f"the kernel crashed or hung in {MAX_FAILURES} calls before it"))
    return report


def _failure(outcome: isolate.Outcome) -> tuple[str, str]:
    """(kind, message) of a call the child did not survive."""
    tail = outcome.output
    asan = next((line for line in tail.splitlines() if "ERROR: AddressSanitizer" in line), "")
    if asan:
        return "bounds", f"AddressSanitizer: {asan.split('AddressSanitizer:', 1)[1].strip()}"
    if outcome.kind == "time":
        return "time", outcome.failure
    if outcome.signal in ("SIGSEGV", "SIGBUS"):
        return "bounds", (f"{outcome.failure}: an access outside an input or output (each sits against a "
                          "guard page)" + (f"; output: {_last_lines(tail)}" if tail else ""))
    return "crash", outcome.failure + (f"; output: {_last_lines(tail)}" if tail else "")


def _last_lines(text: str, n: int = 3) -> str:
    return " | ".join(line.strip() for line in text.splitlines()[-n:] if line.strip())[-500:]
