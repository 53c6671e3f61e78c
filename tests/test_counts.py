"""The layer calculator (`kernels.layer_counts`, `python -m kernels count`) against direct enumeration:
naive loops that compute the layer and count every multiply and add they perform."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kernels
from kernels import layer_counts
from kernels.spec import OPS

ROOT = Path(__file__).resolve().parent.parent


class Tally:
    """A naive loop's operation counter: `macs` counts every tap (padding too), the rest what is done."""

    def __init__(self):
        self.macs = self.multiplies = self.adds = self.nonlinearity = 0

    def dot(self, terms, bias=None):
        """Sum products one by one (T terms: T multiplies, T-1 adds), then the bias (1 add)."""
        acc = None
        for a, b in terms:
            self.multiplies += 1
            if acc is None:
                acc = a * b
            else:
                acc = acc + a * b
                self.adds += 1
        if bias is not None:
            if acc is None:
                acc = bias  # nothing to add it to: the output is the bias
            else:
                acc = acc + bias
                self.adds += 1
        return 0.0 if acc is None else acc

    def relu(self, value):
        self.nonlinearity += 1
        return max(value, 0.0)


def naive_conv(x, w, b, stride, padding, dilation, groups, relu):
    """y and its Tally for a conv over the trailing len(stride) axes; taps on the padding are skipped."""
    dims = len(stride)
    N, C_in, *size = x.shape
    C_out, C_in_g, *ks = w.shape
    # Output positions by enumeration: every window start whose last tap still lies in the padded input.
    padded = [size[d] + 2 * padding[d] for d in range(dims)]
    out_size = [sum(1 for o in range(padded[d]) if o * stride[d] + (ks[d] - 1) * dilation[d] < padded[d])
                for d in range(dims)]
    y, tally = np.zeros((N, C_out, *out_size)), Tally()
    for n, co in itertools.product(range(N), range(C_out)):
        ci0 = co // (C_out // groups) * C_in_g
        for pos in itertools.product(*map(range, out_size)):
            terms = []
            for c in range(C_in_g):
                for taps in itertools.product(*map(range, ks)):
                    tally.macs += 1
                    j = [pos[d] * stride[d] + taps[d] * dilation[d] - padding[d] for d in range(dims)]
                    if all(0 <= j[d] < size[d] for d in range(dims)):
                        terms.append((w[(co, c, *taps)], x[(n, ci0 + c, *j)]))
            value = tally.dot(terms, None if b is None else b[co])
            y[(n, co, *pos)] = tally.relu(value) if relu else value
    return y, tally


def assert_counts_match(count, tally, y):
    assert count.output_shape == y.shape
    assert (count.macs, count.multiplies, count.adds, count.nonlinearity) == \
        (tally.macs, tally.multiplies, tally.adds, tally.nonlinearity)
    assert count.flops == 2 * tally.macs
    assert count.exact_ops == tally.multiplies + tally.adds + tally.nonlinearity


# (N, C_in, C_out, L, K, stride, padding, dilation, groups, bias, relu)
CONV1D = [
    (1, 1, 1, 1, 1, 1, 0, 1, 1, True, False),
    (2, 3, 4, 9, 3, 1, 0, 1, 1, True, False),
    (2, 3, 4, 9, 3, 1, 1, 1, 1, True, True),
    (1, 2, 3, 10, 3, 2, 2, 2, 1, False, False),
    (1, 2, 2, 4, 2, 1, 5, 1, 1, True, True),  # outputs that see only padding
    (1, 2, 2, 4, 2, 1, 5, 1, 1, False, False),
    (2, 4, 6, 13, 3, 3, 2, 2, 2, True, False),  # groups
    (1, 3, 3, 8, 3, 1, 1, 1, 3, True, True),  # depthwise
    (1, 1, 2, 3, 5, 1, 1, 1, 1, True, False),  # K = L + 2*padding
]


@pytest.mark.parametrize("layer", CONV1D, ids=str)
def test_conv1d_counts_equal_enumeration(layer, rng):
    N, C_in, C_out, L, K, stride, padding, dilation, groups, bias, relu = layer
    x, w = rng.standard_normal((N, C_in, L)), rng.standard_normal((C_out, C_in // groups, K))
    b = rng.standard_normal(C_out) if bias else None
    y, tally = naive_conv(x, w, b, (stride,), (padding,), (dilation,), groups, relu)
    count = layer_counts.conv1d(N, C_in, C_out, L, K, stride=stride, padding=padding, dilation=dilation,
                                groups=groups, bias=bias, activation="relu" if relu else None)
    assert_counts_match(count, tally, y)
    assert count.weights == w.size and count.biases == (C_out if bias else 0)
    # The counting loop is a real convolution: it agrees with the reference.
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    ref = kernels.get("conv1d_layer", "numpy")(x, w, b, **kw)
    np.testing.assert_allclose(y, np.maximum(ref, 0) if relu else ref, rtol=1e-12, atol=1e-12)


# (N, C_in, C_out, (H, W), (KH, KW), stride, padding, dilation, groups, bias, relu)
CONV2D = [
    (1, 1, 1, (1, 1), (1, 1), (1, 1), (0, 0), (1, 1), 1, True, False),
    (2, 2, 3, (5, 6), (3, 2), (1, 1), (0, 0), (1, 1), 1, True, True),
    (1, 2, 2, (7, 5), (3, 3), (2, 1), (1, 2), (1, 2), 1, False, False),
    (1, 4, 2, (6, 6), (3, 3), (2, 2), (3, 1), (2, 1), 2, True, False),
]


@pytest.mark.parametrize("layer", CONV2D, ids=str)
def test_conv2d_counts_equal_enumeration(layer, rng):
    N, C_in, C_out, size, k, stride, padding, dilation, groups, bias, relu = layer
    x, w = rng.standard_normal((N, C_in, *size)), rng.standard_normal((C_out, C_in // groups, *k))
    b = rng.standard_normal(C_out) if bias else None
    y, tally = naive_conv(x, w, b, stride, padding, dilation, groups, relu)
    count = layer_counts.conv2d(N, C_in, C_out, size, k, stride=stride, padding=padding, dilation=dilation,
                                groups=groups, bias=bias, activation="relu" if relu else None)
    assert_counts_match(count, tally, y)
    assert count.params == w.size + (C_out if bias else 0)


def test_conv2d_enumeration_is_torch_conv2d(rng):
    """The 2-D counting loop computes what torch.nn.functional.conv2d computes."""
    torch = pytest.importorskip("torch", reason="torch is an optional test extra (pip install torch)")
    for N, C_in, C_out, size, k, stride, padding, dilation, groups, bias, _ in CONV2D:
        x, w = rng.standard_normal((N, C_in, *size)), rng.standard_normal((C_out, C_in // groups, *k))
        b = rng.standard_normal(C_out) if bias else None
        y, _ = naive_conv(x, w, b, stride, padding, dilation, groups, False)
        tb = None if b is None else torch.tensor(b)
        t = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), tb, stride=stride, padding=padding,
                                       dilation=dilation, groups=groups)
        np.testing.assert_allclose(y, t.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch,fin,fout,bias,relu", [(1, 1, 1, True, False), (3, 5, 4, True, True),
                                                      (2, 7, 3, False, False)])
def test_dense_counts_equal_enumeration(batch, fin, fout, bias, relu, rng):
    x, w = rng.standard_normal((batch, fin)), rng.standard_normal((fout, fin))
    b = rng.standard_normal(fout) if bias else None
    y, tally = np.zeros((batch, fout)), Tally()
    for n, o in itertools.product(range(batch), range(fout)):
        tally.macs += fin
        value = tally.dot(zip(w[o], x[n], strict=True), None if b is None else b[o])
        y[n, o] = tally.relu(value) if relu else value
    ref = x @ w.T + (0 if b is None else b)
    np.testing.assert_allclose(y, np.maximum(ref, 0) if relu else ref, rtol=1e-12)
    count = layer_counts.dense(batch, fin, fout, bias=bias, activation="relu" if relu else None)
    assert_counts_match(count, tally, y)
    assert count.params == fin * fout + (fout if bias else 0)


def test_conventions_agree_without_padding():
    """With a bias and no padding, every output is a full dot product: exact mul + add = 2 * MACs."""
    c = layer_counts.conv1d(8, 64, 128, 4096, 7, stride=2, dilation=3, bias=True, activation="relu")
    assert c.multiplies + c.adds == c.flops and c.exact_ops == c.flops + c.outputs
    d = layer_counts.dense(8, 4096, 1000)
    assert d.exact_ops == d.flops == 2 * 8 * 4096 * 1000


def test_parameters_match_torch_modules():
    torch = pytest.importorskip("torch", reason="torch is an optional test extra (pip install torch)")
    nn = torch.nn
    cases = [(nn.Conv1d(6, 8, 5, groups=2), layer_counts.conv1d(1, 6, 8, 20, 5, groups=2)),
             (nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
              layer_counts.conv2d(1, 3, 64, (224, 224), 7, stride=2, padding=3, bias=False)),
             (nn.Linear(4096, 1000), layer_counts.dense(8, 4096, 1000))]
    for module, count in cases:
        assert count.params == sum(p.numel() for p in module.parameters())
        shape = module(torch.zeros(count.input_shape)).shape
        assert tuple(shape) == count.output_shape


def test_layer_ops_take_their_counts_from_the_calculator(rng):
    """One source of truth: the conv1d_layer ops' flops are the calculator's."""
    for sizes in [dict(N=8, C_in=64, C_out=128, L=4096, K=31, padding=15),
                  dict(N=2, C_in=4, C_out=6, L=33, K=5, stride=3, padding=3, dilation=2, groups=2,
                       bias=False)]:
        (x, w, *_), kwargs = OPS["conv1d_layer"].make_args(rng, np.float32, **sizes)
        p, _ = OPS["conv1d_layer"].parse(x, w, **kwargs)
        c = layer_counts.conv1d(p.N, p.C_in, p.C_out, p.L, p.K, stride=p.stride, padding=p.padding,
                                dilation=p.dilation, groups=p.groups, bias=False)
        assert OPS["conv1d_layer"].flops(p) == c.flops == p.count().flops
        bp, _ = OPS["conv1d_layer_backward"].parse(*OPS["conv1d_layer_backward"].make_args(rng, np.float32,
                                                                                           **sizes)[0], **{
            **kwargs, "has_bias": sizes.get("bias", True)})
        assert OPS["conv1d_layer_backward"].flops(bp) == 2 * c.flops


@pytest.mark.parametrize("call,words", [
    (lambda: layer_counts.conv1d(1, 2, 3, 4, 7), ["dilation*(K-1)+1 = 7", "L + 2*padding = 4"]),
    (lambda: layer_counts.conv1d(1, 2, 3, 8, 3, stride=0), ["stride", ">= 1"]),
    (lambda: layer_counts.conv1d(1, 2, 3, 8, 3, padding=-1), ["padding", ">= 0"]),
    (lambda: layer_counts.conv1d(1, 3, 4, 8, 3, groups=2), ["groups", "divide"]),
    (lambda: layer_counts.conv2d(1, 3, 4, (8, 8), (3, 3, 3)), ["k", "1 or 2 values"]),
    (lambda: layer_counts.dense(1, 0, 4), ["in_features", ">= 1"]),
    (lambda: layer_counts.dense(1, 2, 4, activation="softmax"), ["activation", "relu"]),
])
def test_impossible_layers_are_rejected(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert all(w in str(info.value) for w in words), str(info.value)


# --- the command line ---------------------------------------------------------------------------------

def run_count(*args):
    return subprocess.run([sys.executable, "-m", "kernels", "count", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args,count", [
    (["conv1d", "--input", "8", "64", "4096", "--out-channels", "128", "--kernel", "3", "--padding", "1",
      "--activation", "relu"], layer_counts.conv1d(8, 64, 128, 4096, 3, padding=1, activation="relu")),
    (["conv2d", "-i", "1", "3", "224", "224", "-o", "64", "-k", "7", "--stride", "2", "--padding", "3",
      "--no-bias"], layer_counts.conv2d(1, 3, 64, (224, 224), 7, stride=2, padding=3, bias=False)),
    (["conv2d", "-i", "1", "3", "32", "48", "-o", "8", "-k", "3", "5", "--padding", "1", "2"],
     layer_counts.conv2d(1, 3, 8, (32, 48), (3, 5), padding=(1, 2))),
    (["dense", "--input", "8", "4096", "--out-features", "1000"], layer_counts.dense(8, 4096, 1000)),
])
def test_cli_prints_shape_parameters_and_both_conventions(args, count):
    result = run_count(*args)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out == layer_counts.describe(count) + "\n"
    for text in (str(count.output_shape), f"{count.params:,}", f"{count.flops:,}", f"{count.exact_ops:,}",
                 "FLOPs (2/MAC)", "exact ops"):
        assert text in out, f"{text!r} not in\n{out}"


def test_cli_reports_impossible_layers():
    result = run_count("conv1d", "--input", "1", "2", "4", "-o", "3", "-k", "7")
    assert result.returncode == 2 and "L + 2*padding = 4" in result.stderr
