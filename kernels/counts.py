"""FLOP and byte counts: the one source of truth for the harness, the CLI and the roofline.

Convention: a multiply-add is 2 FLOPs. Minimum bytes count each input read once and each output
written once, at the op's dtype (``itemsize`` bytes per element).

Layers (conv1d, conv2d, dense: shapes, parameters, and operations in both conventions, 2 per MAC and
exact multiplies + adds) are counted in `kernels.layer_counts`, which the conv1d_layer ops call.
"""

from __future__ import annotations


def valid_length(n: int, k: int) -> int:
    """m = n - k + 1, the number of positions where a length-k filter fits in a length-n signal."""
    return n - k + 1


def correlation_flops(n: int, k: int) -> int:
    """k multiply-adds for each of the m outputs (forward, weight gradient and input gradient alike)."""
    return 2 * k * valid_length(n, k)


def circular_flops(n: int) -> int:
    """n multiply-adds for each of the n lags."""
    return 2 * n * n


def bytes_moved(itemsize: int, *lengths: int) -> int:
    """Each listed array (inputs and outputs) touched once."""
    return itemsize * sum(lengths)
