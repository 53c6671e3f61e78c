"""Reading SASS (nvdisasm or cuobjdump -sass output): functions, loops and their instruction mix.

    funcs = sass_functions(text)          # {function: [(offset, opcode, operands, labels)]}
    hot_loop(funcs[name])                 # the innermost loop with the most FMAs, and its mix
    direct_loop(instrs)                   # a one-thread-per-output kernel's tap loop
    chunk_profile(instrs, fma_per_chunk)  # a GEMM kernel's chunk loop: straight-line code and staging loops
    nested_profile(instrs, trips, ...)    # the cost of the hot loop with the loops around it

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
