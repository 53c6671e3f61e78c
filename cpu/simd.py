"""Explicit SIMD vectors for numba kernels: a `Vec` type held in one vector register, and its ops.

numba's loop vectorizer only vectorizes the innermost loop, and its SLP vectorizer (which would
turn many scalar accumulators into vector registers) is off by default. A register-blocked kernel
needs a dozen accumulators that stay in registers across the whole tap loop, so it spells the
vectors out instead, as one would with C intrinsics:

    a = vzero(x)                       # LANES[dtype] zeros of x's dtype
    a = vfma(vload(x, j), vsplat(w[i]), a)   # a += x[j:j+LANES] * w[i], one fused multiply-add
    vstore_row(y, j, (a,))             # y[j:j+LANES] = a (a row of one vector)

`Vec(dtype, lanes)` is an LLVM `<lanes x float>` value. The width is the host's widest vector
register (64 bytes with AVX-512, 32 with AVX/AVX2, 16 otherwise), so `LANES[float32]` is 16, 8 or 4.
`vload`/`vstore_row` are unaligned and unchecked: the caller keeps `j + LANES <= len`. `vfma` is
`llvm.fmuladd` (one rounding where the CPU has FMA, multiply then add where it has not), and the
accumulator keeps the array's dtype, so float32 kernels accumulate in float32.
"""

from __future__ import annotations

import llvmlite.binding as llb
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model


def _register_bytes() -> int:
    features = llb.get_host_cpu_features()
    if features.get("avx512f"):
        return 64
    if features.get("avx"):
        return 32
    return 16


#: Width of the widest vector register on this machine, in bytes.
REGISTER_BYTES = _register_bytes()
#: Elements per vector for each dtype the kernels take.
LANES = {np.dtype(np.float32): REGISTER_BYTES // 4, np.dtype(np.float64): REGISTER_BYTES // 8}


class Vec(types.Type):
    """`lanes` elements of `dtype` (a numba float type) in one vector register."""

    def __init__(self, dtype, lanes: int):
        self.dtype, self.lanes = dtype, lanes
        super().__init__(name=f"Vec({dtype} x {lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        be_type = ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.lanes)
        super().__init__(dmm, fe_type, be_type)


def _vec_of(dtype) -> Vec:
    return Vec(dtype, REGISTER_BYTES // (dtype.bitwidth // 8))


def _is_float_array(a) -> bool:
    """A 1-D C-contiguous float array (loads and stores ignore strides, so others are refused)."""
    return isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" and isinstance(a.dtype, types.Float)


def _element_pointer(context, builder, aty, arr, index, vty):
    """Pointer to arr[index] as a pointer to a vector (no wraparound, no bounds check)."""
    data = context.make_array(aty)(context, builder, arr).data
    ptr = builder.gep(data, [index])
    return builder.bitcast(ptr, context.get_value_type(vty).as_pointer())


@intrinsic
def vload(typingctx, arr, index):
    """arr[index : index + LANES] as a vector (unaligned)."""
    if not (_is_float_array(arr) and isinstance(index, types.Integer)):
        return None
    vty = _vec_of(arr.dtype)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0],
                               context.cast(builder, args[1], sig.args[1], types.intp), vty)
        return builder.load(ptr, align=arr.dtype.bitwidth // 8)

    return vty(arr, index), codegen


@intrinsic
def vsplat(typingctx, s):
    """A vector with every lane equal to the scalar s (a broadcast)."""
    if not isinstance(s, types.Float):
        return None
    vty = _vec_of(s)

    def codegen(context, builder, sig, args):
        lanes = vty.lanes
        v = builder.insert_element(ir.Constant(context.get_value_type(vty), ir.Undefined), args[0],
                                   ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))

    return vty(s), codegen


@intrinsic
def vzero(typingctx, arr):
    """A vector of zeros of arr's dtype."""
    if not _is_float_array(arr):
        return None
    vty = _vec_of(arr.dtype)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vty), None)

    return vty(arr), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c lane by lane (llvm.fmuladd: fused where the CPU has FMA)."""
    if not (isinstance(a, Vec) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        return _fmuladd(builder, a, *args)

    return a(a, b, c), codegen


@intrinsic
def lanes(typingctx, arr):
    """LANES for arr's dtype, as a compile-time constant."""
    if not _is_float_array(arr):
        return None
    n = _vec_of(arr.dtype).lanes

    def codegen(context, builder, sig, args):
        return ir.Constant(ir.IntType(64), n)

    return types.int64(arr), codegen


# --- rows of vectors: a tuple of R accumulators, R fixed at compile time -------------------------
#
# A register-blocked kernel keeps R vectors of accumulators (R * LANES consecutive outputs) in
# registers. `vzeros(arr, R)` makes them, with R a literal; the ops below then unroll over the
# tuple, so one kernel source serves every R and numba compiles one specialization per R used.

def _row_of(tup):
    return isinstance(tup, types.UniTuple) and isinstance(tup.dtype, Vec)


@intrinsic
def vzeros(typingctx, arr, count):
    """A tuple of `count` (a literal int) zero vectors of arr's dtype."""
    if not (_is_float_array(arr) and isinstance(count, types.IntegerLiteral)):
        return None
    tty = types.UniTuple(_vec_of(arr.dtype), count.literal_value)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(tty), None)

    return tty(arr, count), codegen


def _loads(context, builder, aty, arr, base, vty, count):
    """count vectors arr[base + r*LANES : ...] for r < count."""
    base = context.cast(builder, base[1], base[0], types.intp)
    out = []
    for r in range(count):
        index = builder.add(base, ir.Constant(base.type, r * vty.lanes))
        out.append(builder.load(_element_pointer(context, builder, aty, arr, index, vty),
                                align=aty.dtype.bitwidth // 8))
    return out


def _fmuladd(builder, vty, a, b, c):
    """a * b + c as llvm.fmuladd on vectors of type vty."""
    lty = a.type
    name = f"llvm.fmuladd.v{vty.lanes}f{vty.dtype.bitwidth}"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(lty, [lty] * 3), name)
    return builder.call(fn, [a, b, c])


@intrinsic
def vfma_row(typingctx, acc, arr, base, wv):
    """acc[r] += arr[base + r*LANES : ...] * wv for every r: one tap applied to a row of outputs."""
    if not (_row_of(acc) and _is_float_array(arr) and isinstance(base, types.Integer)
            and wv == acc.dtype == _vec_of(arr.dtype)):
        return None
    vty, count = acc.dtype, acc.count

    def codegen(context, builder, sig, args):
        vs = _loads(context, builder, sig.args[1], args[1], (sig.args[2], args[2]), vty, count)
        out = args[0]
        for r in range(count):
            a = builder.extract_value(args[0], r)
            out = builder.insert_value(out, _fmuladd(builder, vty, vs[r], args[3], a), r)
        return out

    return acc(acc, arr, base, wv), codegen


@intrinsic
def vfma_row2(typingctx, acc, arr, base, w0, w1):
    """acc[r] += arr[base + r*LANES : ...] * w0 + arr[base + (r+1)*LANES : ...] * w1.

    Two taps LANES apart share the row's loads: R + 1 vector loads feed 2R multiply-adds, where
    one tap at a time needs R loads for R (the loads, not the FMAs, were the bottleneck).
    """
    if not (_row_of(acc) and _is_float_array(arr) and isinstance(base, types.Integer)
            and w0 == w1 == acc.dtype == _vec_of(arr.dtype)):
        return None
    vty, count = acc.dtype, acc.count

    def codegen(context, builder, sig, args):
        vs = _loads(context, builder, sig.args[1], args[1], (sig.args[2], args[2]), vty, count + 1)
        out = args[0]
        for r in range(count):
            a = builder.extract_value(args[0], r)
            a = _fmuladd(builder, vty, vs[r], args[3], a)
            a = _fmuladd(builder, vty, vs[r + 1], args[4], a)
            out = builder.insert_value(out, a, r)
        return out

    return acc(acc, arr, base, w0, w1), codegen


@intrinsic
def vstore_row(typingctx, arr, index, acc):
    """arr[index + r*LANES : ...] = acc[r] for every r."""
    if not (_is_float_array(arr) and isinstance(index, types.Integer) and _row_of(acc)
            and acc.dtype == _vec_of(arr.dtype)):
        return None
    vty = acc.dtype

    def codegen(context, builder, sig, args):
        base = context.cast(builder, args[1], sig.args[1], types.intp)
        for r in range(acc.count):
            i = builder.add(base, ir.Constant(base.type, r * vty.lanes))
            builder.store(builder.extract_value(args[2], r),
                          _element_pointer(context, builder, sig.args[0], args[0], i, vty),
                          align=arr.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(arr, index, acc), codegen


@intrinsic
def vfma_shifts(typingctx, acc, arr, base, v):
    """acc[r] += arr[base + r : base + r + LANES] * v for every r: a row of taps, one element apart.

    The dot-product form of a short correlation: lanes run along the sum, acc[r] belongs to tap r.
    """
    if not (_row_of(acc) and _is_float_array(arr) and isinstance(base, types.Integer)
            and v == acc.dtype == _vec_of(arr.dtype)):
        return None
    vty, count = acc.dtype, acc.count

    def codegen(context, builder, sig, args):
        start = context.cast(builder, args[2], sig.args[2], types.intp)
        out = args[0]
        for r in range(count):
            i = builder.add(start, ir.Constant(start.type, r))
            xv = builder.load(_element_pointer(context, builder, sig.args[1], args[1], i, vty),
                              align=arr.dtype.bitwidth // 8)
            out = builder.insert_value(out, _fmuladd(builder, vty, xv, args[3],
                                                     builder.extract_value(args[0], r)), r)
        return out

    return acc(acc, arr, base, v), codegen


@intrinsic
def vadd_rows(typingctx, a, b):
    """a[r] + b[r] for every r."""
    if not (_row_of(a) and a == b):
        return None

    def codegen(context, builder, sig, args):
        out = args[0]
        for r in range(a.count):
            out = builder.insert_value(out, builder.fadd(builder.extract_value(args[0], r),
                                                         builder.extract_value(args[1], r)), r)
        return out

    return a(a, b), codegen


# --- tiles: MR rows of NR vectors (a tuple of MR*NR accumulators, row-major), for the conv1d layer -----


def _tile_of(acc, nr):
    return _row_of(acc) and isinstance(nr, types.IntegerLiteral) and acc.count % nr.literal_value == 0


@intrinsic
def vfma_tile(typingctx, acc, x, xbase, w, wbase, nr):
    """acc[m*NR + r] += x[xbase + r*LANES : ...] * w[wbase + m] for m < MR, r < NR (NR = nr, a literal;
    MR = len(acc) / NR): NR vector loads and MR broadcasts feed MR*NR multiply-adds."""
    if not (_tile_of(acc, nr) and _is_float_array(x) and _is_float_array(w) and isinstance(xbase, types.Integer)
            and isinstance(wbase, types.Integer) and acc.dtype == _vec_of(x.dtype) == _vec_of(w.dtype)):
        return None
    vty, NR = acc.dtype, nr.literal_value
    MR = acc.count // NR

    def codegen(context, builder, sig, args):
        xs = _loads(context, builder, sig.args[1], args[1], (sig.args[2], args[2]), vty, NR)
        wb = context.cast(builder, args[4], sig.args[4], types.intp)
        wdata = context.make_array(sig.args[3])(context, builder, args[3]).data
        out = args[0]
        for m in range(MR):
            s = builder.load(builder.gep(wdata, [builder.add(wb, ir.Constant(wb.type, m))]))
            v = builder.insert_element(ir.Constant(xs[0].type, ir.Undefined), s, ir.Constant(ir.IntType(32), 0))
            wv = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), vty.lanes), [0] * vty.lanes))
            for r in range(NR):
                i = m * NR + r
                out = builder.insert_value(out, _fmuladd(builder, vty, xs[r], wv, builder.extract_value(out, i)), i)
        return out

    return acc(acc, x, xbase, w, wbase, nr), codegen


@intrinsic
def vfma_outer(typingctx, acc, g, gbase, gstride, x, xbase, offs, obase, nr):
    """acc[m*NR + j] += g[gbase + m*gstride : ... + LANES] * x[xbase + offs[obase + j] : ... + LANES] for m < MR,
    j < NR (NR = nr, a literal): MR + NR vector loads feed MR*NR multiply-adds, lanes along the sum."""
    if not (_tile_of(acc, nr) and _is_float_array(g) and _is_float_array(x)
            and isinstance(offs, types.Array) and offs.ndim == 1 and isinstance(offs.dtype, types.Integer)
            and all(isinstance(a, types.Integer) for a in (gbase, gstride, xbase, obase))
            and acc.dtype == _vec_of(g.dtype) == _vec_of(x.dtype)):
        return None
    vty, NR = acc.dtype, nr.literal_value
    MR = acc.count // NR

    def codegen(context, builder, sig, args):
        ints = [context.cast(builder, args[i], sig.args[i], types.intp) for i in (2, 3, 5, 7)]
        gb, gs, xb, ob = ints
        odata = context.make_array(sig.args[6])(context, builder, args[6]).data
        gv = [builder.load(_element_pointer(context, builder, sig.args[1], args[1],
                                            builder.add(gb, builder.mul(gs, ir.Constant(gs.type, m))), vty),
                           align=g.dtype.bitwidth // 8) for m in range(MR)]
        out = args[0]
        for j in range(NR):
            o = builder.load(builder.gep(odata, [builder.add(ob, ir.Constant(ob.type, j))]))
            o = context.cast(builder, o, offs.dtype, types.intp)
            xv = builder.load(_element_pointer(context, builder, sig.args[4], args[4], builder.add(xb, o), vty),
                              align=x.dtype.bitwidth // 8)
            for m in range(MR):
                i = m * NR + j
                out = builder.insert_value(out, _fmuladd(builder, vty, gv[m], xv, builder.extract_value(out, i)), i)
        return out

    return acc(acc, g, gbase, gstride, x, xbase, offs, obase, nr), codegen


@intrinsic
def vstore_tile(typingctx, y, ybase, ystride, acc, nr, b, bbase):
    """y[ybase + m*ystride + r*LANES : ...] = acc[m*NR + r] + b[bbase + m] for m < MR, r < NR."""
    if not (_tile_of(acc, nr) and _is_float_array(y) and _is_float_array(b) and acc.dtype == _vec_of(y.dtype)
            and all(isinstance(a, types.Integer) for a in (ybase, ystride, bbase))):
        return None
    vty, NR = acc.dtype, nr.literal_value
    MR = acc.count // NR

    def codegen(context, builder, sig, args):
        yb, ys, bb = (context.cast(builder, args[i], sig.args[i], types.intp) for i in (1, 2, 6))
        bdata = context.make_array(sig.args[5])(context, builder, args[5]).data
        for m in range(MR):
            s = builder.load(builder.gep(bdata, [builder.add(bb, ir.Constant(bb.type, m))]))
            v = builder.insert_element(ir.Constant(context.get_value_type(vty), ir.Undefined), s,
                                       ir.Constant(ir.IntType(32), 0))
            bv = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), vty.lanes), [0] * vty.lanes))
            row = builder.add(yb, builder.mul(ys, ir.Constant(ys.type, m)))
            for r in range(NR):
                i = builder.add(row, ir.Constant(row.type, r * vty.lanes))
                builder.store(builder.fadd(builder.extract_value(args[3], m * NR + r), bv),
                              _element_pointer(context, builder, sig.args[0], args[0], i, vty),
                              align=y.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(y, ybase, ystride, acc, nr, b, bbase), codegen


@intrinsic
def vload_row(typingctx, arr, index, count):
    """A tuple of `count` (a literal int) vectors arr[index + r*LANES : ...] (vstore_row's inverse)."""
    if not (_is_float_array(arr) and isinstance(index, types.Integer) and isinstance(count, types.IntegerLiteral)):
        return None
    vty = _vec_of(arr.dtype)
    tty = types.UniTuple(vty, count.literal_value)

    def codegen(context, builder, sig, args):
        vs = _loads(context, builder, sig.args[0], args[0], (sig.args[1], args[1]), vty, count.literal_value)
        out = ir.Constant(context.get_value_type(tty), ir.Undefined)
        for r, v in enumerate(vs):
            out = builder.insert_value(out, v, r)
        return out

    return tty(arr, index, count), codegen
