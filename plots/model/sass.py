"""Reading SASS (nvdisasm or cuobjdump -sass output): functions, loops and their instruction mix.

    funcs = sass_functions(text)          # {function: [(offset, opcode, operands, labels)]}
    hot_loop(funcs[name])                 # the innermost loop with the most FMAs, and its mix
    direct_loop(instrs)                   # a one-thread-per-output kernel's tap loop
    chunk_profile(instrs, fma_per_chunk)  # a GEMM kernel's chunk loop: straight-line code and staging loops
    nested_profile(instrs, trips, ...)    # the cost of the hot loop with the loops around it
    chunk_life(instrs, conditional)       # a staged kernel's chunk: staging loop, loads in flight, other code

A loop is the span of a backward branch; an instruction counts as FMA (FFMA, DFMA), LDS, STS, LDG (global or
generic loads) or STG (global stores, reductions and atomics).
"""

from __future__ import annotations

import re

_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_LABEL = re.compile(r"^(\.L_x_\d+):")
_TARGET = re.compile(r"`\((\.L_x_\d+)\)")
_FUNC = re.compile(r"^\.text\.(\S+):")


def sass_functions(text: str) -> dict[str, list[tuple]]:
    """{function name: [(offset, opcode, operands, label or None)]} of nvdisasm / cuobjdump -sass output."""
    funcs, current, pending = {}, None, []
    for line in text.splitlines():
        line = line.strip()
        if m := _FUNC.match(line):
            current = funcs.setdefault(m[1], [])
            continue
        if m := _LABEL.match(line):
            pending.append(m[1])
            continue
        if current is not None and (m := _INSTR.search(line)):
            current.append((int(m[1], 16), m[3], m[4], tuple(pending)))
            pending = []
    return funcs


def _kinds(opcode: str) -> set:
    op = opcode.split(".")[0]
    out = set()
    if op in ("FFMA", "DFMA"):
        out.add("fma")
    if op in ("FFMA", "DFMA", "FADD", "DADD", "FMUL", "DMUL"):
        out.add("fp")
    if op == "LDS":
        out.add("lds")
    if op in ("LDG", "LD"):
        out.add("ldg")
    if op in ("STG", "ST", "RED", "ATOMG", "ATOM"):
        out.add("stg")
    return out


def hot_loop(instrs: list[tuple]) -> dict:
    """The innermost loop (a backward branch's span) holding the most FMAs (else FP ops), and its mix.

    Returns instructions, fma, lds, ldg, stg counts of one trip, fma_per_instruction,
    lds_per_fma and ldg_per_fma; zeros (and loop None) when the function has no loop."""
    where = {}
    for i, (_, _, _, labels) in enumerate(instrs):
        for label in labels:
            where[label] = i
    loops = []
    for i, (_, opcode, operands, _) in enumerate(instrs):
        if opcode.startswith(("BRA", "JMP")) and (m := _TARGET.search(operands)) and where.get(m[1], i + 1) <= i:
            loops.append((where[m[1]], i))

    def mix(lo, hi):
        counts = {"instructions": 0, "fma": 0, "fp": 0, "lds": 0, "ldg": 0, "stg": 0}
        for _, opcode, _, _ in instrs[lo:hi + 1]:
            if opcode.startswith("NOP"):
                continue
            counts["instructions"] += 1
            for kind in _kinds(opcode):
                counts[kind] += 1
        return counts

    mixes = {span: mix(*span) for span in loops}
    key = "fma" if any(m["fma"] for m in mixes.values()) else "fp"
    candidates = [s for s in loops if mixes[s][key] and not any(
        t != s and s[0] <= t[0] and t[1] <= s[1] and mixes[t][key] for t in loops)]
    if not candidates:
        return {"loop": None, "instructions": 0, "fma": 0, "fp": 0, "lds": 0, "ldg": 0, "stg": 0,
                "fma_per_instruction": 0.0, "lds_per_fma": 0.0, "ldg_per_fma": 0.0}
    span = max(candidates, key=lambda s: (mixes[s][key], -(s[1] - s[0])))
    m = mixes[span]
    per = max(m["fma"], 1)
    return {"loop": [instrs[span[0]][0], instrs[span[1]][0]], **m,
            "fma_per_instruction": m["fma"] / m["instructions"], "lds_per_fma": m["lds"] / per,
            "ldg_per_fma": m["ldg"] / per}


def _loops(instrs):
    where = {label: i for i, (_, _, _, labels) in enumerate(instrs) for label in labels}
    return [(where[m[1]], i) for i, (_, op, operands, _) in enumerate(instrs)
            if op.startswith(("BRA", "JMP")) and (m := _TARGET.search(operands)) and where.get(m[1], i + 1) <= i]


def _mix(rows) -> dict:
    out = {"instructions": 0, "fma": 0, "lds": 0, "sts": 0, "ldg": 0}
    for _, op, _, _ in rows:
        base = op.split(".")[0]
        if base.startswith("NOP"):
            continue
        out["instructions"] += 1
        out["fma"] += base in ("FFMA", "DFMA")
        out["lds"] += base == "LDS"
        out["sts"] += base == "STS"
        out["ldg"] += base in ("LDG", "LD")
    return out


def direct_loop(instrs) -> dict:
    """The tap loop of a one-thread-per-output kernel: of the innermost loops with FMAs, the one that loads
    the most per FMA (the real taps, reading both operands; a loop over taps on the padding multiplies a
    constant zero and loads one), then the shortest. Its FMA per instruction and global loads per FMA."""
    loops = _loops(instrs)
    mixes = {s: _mix(instrs[s[0]:s[1] + 1]) for s in loops}
    inner = [s for s in loops if mixes[s]["fma"] and not any(
        t != s and s[0] <= t[0] and t[1] <= s[1] and mixes[t]["fma"] for t in loops)]
    if not inner:
        raise ValueError("no loop with FMAs in this kernel")
    span = max(inner, key=lambda s: (mixes[s]["ldg"] / mixes[s]["fma"], -(s[1] - s[0])))
    m = mixes[span]
    return {"fma_per_instruction": m["fma"] / m["instructions"], "ldg_per_fma": m["ldg"] / m["fma"]}


def chunk_profile(instrs, fma_per_chunk: int) -> dict:
    """The chunk loop of a gemm kernel (the innermost loop holding FMAs, `hot_loop`): the mix of
    its straight-line code and of each staging loop nested in it (in order). Where the straight-line code
    holds two compute paths of fma_per_chunk FMAs each (dx: interior and edge), the costlier one is left out
    and returned as `edge`."""
    loop = hot_loop(instrs)["loop"]
    if loop is None:
        raise ValueError("no loop with FMAs in this kernel")
    index = {off: i for i, (off, _, _, _) in enumerate(instrs)}
    lo, hi = index[loop[0]], index[loop[1]]
    nested = [s for s in _loops(instrs) if lo <= s[0] and s[1] <= hi and s != (lo, hi)]
    nested = [s for s in nested if not any(t != s and t[0] <= s[0] and s[1] <= t[1] for t in nested)]
    inside = set().union(*(range(a, b + 1) for a, b in nested)) if nested else set()
    straight = [instrs[i] for i in range(lo, hi + 1) if i not in inside]
    fmas = [i for i, r in enumerate(straight) if r[1].startswith(("FFMA", "DFMA"))]
    edge = None
    if len(fmas) >= 2 * fma_per_chunk:
        first = (fmas[0], fmas[fma_per_chunk - 1])
        second = (fmas[fma_per_chunk], fmas[2 * fma_per_chunk - 1])
        a, b = max((first, second), key=lambda s: s[1] - s[0])
        edge = _mix(straight[a:b + 1])
        straight = straight[:a] + straight[b + 1:]
    return {"straight": _mix(straight), "loops": [_mix(instrs[a:b + 1]) for a, b in sorted(nested)], "edge": edge}


def _enclosing(instrs, span):
    """The loops (index spans) strictly containing `span`, innermost first."""
    return sorted((s for s in _loops(instrs) if s[0] <= span[0] and span[1] <= s[1] and s != span),
                  key=lambda s: s[1] - s[0])


def if_else_arms(instrs, conditional, lo: int, hi: int) -> list[tuple]:
    """The if/else diamonds within instrs[lo..hi]: a predicated forward branch (offset in `conditional`) at a
    to label x, an unpredicated forward branch at x-1 to label y: [(then arm (a+1, x-1), else arm (x, y-1))]."""
    where = {label: i for i, (_, _, _, labels) in enumerate(instrs) for label in labels}

    def target(i):
        m = _TARGET.search(instrs[i][2]) if instrs[i][1].startswith("BRA") else None
        return where.get(m[1]) if m else None

    out = []
    for a in range(lo, hi + 1):
        x = target(a) if instrs[a][0] in conditional else None
        if x is None or not a + 1 < x <= hi or instrs[x - 1][0] in conditional:
            continue
        y = target(x - 1)
        if y is not None and x < y <= hi + 1:
            out.append(((a + 1, x - 1), (x, y - 1)))
    return out


def nested_profile(instrs, trips, hot_fma: int, conditional=frozenset()) -> dict:
    """The mix of one trip of a numba.cuda gemm kernel's reduction chunk loop: its hot loop (the innermost
    loop with FMAs, hot_fma of them per trip) runs trips[0] times per trip of the loop around it, that one
    trips[1] times per trip of the next, ...; each level adds its own straight-line code once per trip, of
    each if/else in it (`if_else_arms`, outermost first) the shorter arm only: the staging's interior path,
    which all tiles but a few at the sequence ends take (the border path, with its selects, is left out)."""
    loop = hot_loop(instrs)["loop"]
    if loop is None:
        raise ValueError("no loop with FMAs in this kernel")
    index = {off: i for i, (off, _, _, _) in enumerate(instrs)}
    spans = [(index[loop[0]], index[loop[1]])]
    spans += _enclosing(instrs, spans[0])[:len(trips)]
    if len(spans) <= len(trips):
        raise ValueError(f"expected {len(trips)} loops around the hot loop, found {len(spans) - 1}")
    mixes = [_mix(instrs[a:b + 1]) for a, b in spans]
    if mixes[0]["fma"] != hot_fma:
        raise ValueError(f"hot loop has {mixes[0]['fma']} FMAs per trip, expected {hot_fma}")
    for level in range(1, len(spans)):  # leave out the longer arm of each if/else around the inner loop
        (lo, hi), inner = spans[level], spans[level - 1]
        dropped = []
        for arms in if_else_arms(instrs, conditional, lo, hi):
            if any(a <= arms[0][0] <= b for a, b in dropped) or any(
                    a <= inner[0] and inner[1] <= b for a, b in arms):
                continue
            arm = max(arms, key=lambda s: s[1] - s[0])
            dropped.append(arm)
            left_out = _mix(instrs[arm[0]:arm[1] + 1])
            mixes[level] = {k: mixes[level][k] - left_out[k] for k in mixes[level]}
    cost = mixes[0]
    for n, inner, outer in zip(trips, mixes, mixes[1:]):
        cost = {k: outer[k] - inner[k] + n * cost[k] for k in cost}
    return {"chunk": cost, "hot": mixes[0]}


# --- the whole life of a chunk: staging, straight-line code, the hot loop ------------------------------------

_REG = re.compile(r"\bR(\d+)\b")
_STORES = ("ST", "STS", "STG", "RED", "ATOM", "ATOMG", "BRA")


def predicated_branches(text: str) -> frozenset:
    """Offsets of the predicated branches (`@P0 BRA`) of nvdisasm / cuobjdump -sass output: the conditional
    edges `if_else_arms` reads."""
    return frozenset(int(m[1], 16) for line in text.splitlines()
                     if (m := _INSTR.search(line)) and m[2] and m[3].startswith("BRA"))


def load_bytes(opcode: str) -> int:
    """Bytes one lane loads with an LDG / LD: 16 (.128), 8 (.64), else 4."""
    parts = opcode.split(".")
    return 16 if "128" in parts else 8 if "64" in parts else 4


def loads_in_flight(rows) -> tuple[int, int]:
    """(loads, bytes per lane) issued before the first instruction that reads one of their results: what a
    thread keeps in flight at once in straight-line code or one trip of a loop."""
    pending, loads, nbytes = set(), 0, 0
    for _, op, operands, _ in rows:
        base = op.split(".")[0]
        sources = operands if base.startswith(_STORES) else operands.partition(",")[2]
        if pending & {int(r) for r in _REG.findall(sources)}:
            break
        if base in ("LDG", "LD"):
            width = load_bytes(op)
            m = _REG.search(operands.partition(",")[0])
            if m:
                pending |= set(range(int(m[1]), int(m[1]) + max(1, width // 4)))
            loads += 1
            nbytes += width
    return loads, nbytes


def chunk_life(instrs, conditional=frozenset()) -> dict:
    """One chunk of a staged kernel, read from its SASS. The chunk loop is the loop around the hot loop (the
    whole function when there is none). Of each if/else in it (`if_else_arms`) the arm without the hot loop is
    left out, or of two arms without it the longer one (the checked paths: edges, unaligned or padded windows).
    In what is left, the staging loop is the loop of global loads and shared stores that moves the most bytes
    per instruction (the unchecked path the bulk of the data takes). Other loops with FMAs (the remainder of an
    unrolled hot loop), and code a predicated forward branch skips that holds FMAs (a window's tail), are left
    out: a chunk's FMAs are all charged at the hot loop's rate. The rest is counted once
    per chunk:

        hot       mix of one trip of the hot loop
        staging   mix of one staging trip, and its loads in flight (loads and bytes per lane, `loads_in_flight`)
        straight  mix of the chunk's other code: straight-line code and one trip of every other loop without FMAs
        outer     mix of the code outside the chunk loop (prologue, epilogue, once per block and tile)
        inflight  bytes per lane in flight where no staging loop exists: the best loop's (or the straight code's)
    """
    loop = hot_loop(instrs)["loop"]
    if loop is None:
        raise ValueError("no loop with FMAs in this kernel")
    index = {off: i for i, (off, _, _, _) in enumerate(instrs)}
    hot = (index[loop[0]], index[loop[1]])
    around = _enclosing(instrs, hot)
    lo, hi = around[0] if around else (0, len(instrs) - 1)
    dropped = []
    for then, other in if_else_arms(instrs, conditional, lo, hi):
        if any(a <= then[0] <= b for a, b in dropped):
            continue
        if then[0] <= hot[0] and hot[1] <= then[1]:
            dropped.append(other)
        elif not (other[0] <= hot[0] and hot[1] <= other[1]):
            dropped.append(max((then, other), key=lambda s: s[1] - s[0]))
        else:
            dropped.append(then)
    where = {label: i for i, (_, _, _, labels) in enumerate(instrs) for label in labels}
    for a in range(lo, hi + 1):  # code a predicated forward branch skips, holding FMAs: a window's tail
        m = _TARGET.search(instrs[a][2]) if instrs[a][0] in conditional else None
        x = where.get(m[1]) if m else None
        if x is not None and a < x <= hi + 1 and not a <= hot[0] < x and _mix(instrs[a + 1:x])["fma"]:
            dropped.append((a + 1, x - 1))
    kept = [i for i in range(lo, hi + 1) if not any(a <= i <= b for a, b in dropped)]
    kept_set = set(kept)
    inner = [s for s in _loops(instrs) if lo <= s[0] and s[1] <= hi and s != (lo, hi) and s[0] in kept_set]
    inner = [s for s in inner if not any(t != s and t[0] <= s[0] and s[1] <= t[1] for t in inner)]
    mixes = {s: _mix(instrs[s[0]:s[1] + 1]) for s in inner}
    staging = [s for s in inner if s != hot and mixes[s]["ldg"] and mixes[s]["sts"] and not mixes[s]["fma"]]
    per_instr = {s: loads_in_flight(instrs[s[0]:s[1] + 1])[1] / mixes[s]["instructions"] for s in staging}
    stage = max(staging, key=lambda s: (per_instr[s], -s[0])) if staging else None
    skipped = [hot, *([stage] if stage else []), *(t for t in inner if mixes[t]["fma"])]  # FMAs: at the hot rate
    straight = _mix(instrs[i] for i in kept if not any(a <= i <= b for a, b in skipped))
    outer = _mix(r for i, r in enumerate(instrs) if not lo <= i <= hi)
    if stage:
        inflight = loads_in_flight(instrs[stage[0]:stage[1] + 1])
    else:
        with_loads = [s for s in inner if mixes[s]["ldg"]]
        inflight = max((loads_in_flight(instrs[a:b + 1]) for a, b in with_loads), key=lambda f: f[1],
                       default=loads_in_flight([instrs[i] for i in kept]))
    return {"hot": mixes.get(hot) or _mix(instrs[hot[0]:hot[1] + 1]),
            "staging": {**mixes[stage], "loads_in_flight": inflight[0], "bytes_in_flight": inflight[1]}
            if stage else None,
            "straight": straight, "outer": outer, "loads_in_flight": inflight[0], "bytes_in_flight": inflight[1]}
