"""`python -m kernels count`: the layer calculator (`kernels.layer_counts`) on the command line.

    python -m kernels count conv1d --input 8 64 4096 --out-channels 128 --kernel 3 --padding 1 \
        --activation relu
    python -m kernels count conv2d --input 1 3 224 224 --out-channels 64 --kernel 7 --stride 2 --padding 3
    python -m kernels count dense --input 8 4096 --out-features 1000

Shapes follow PyTorch: --input is (N, C_in, L) for conv1d, (N, C_in, H, W) for conv2d, (N, F_in) for dense.
For conv2d, --kernel/--stride/--padding/--dilation take one value (both dimensions) or two (H, W).
"""

from __future__ import annotations

import argparse
import sys

from kernels import layer_counts

CONV_DIMS = {"conv1d": 1, "conv2d": 2}


def compute(args) -> layer_counts.LayerCount:
    """The LayerCount for parsed `count` arguments (ValueError on impossible layers)."""
    shape = args.input
    if args.kind == "dense":
        if len(shape) != 2:
            raise ValueError(f"--input: expected 2 values N F_in for a dense layer, got {len(shape)}")
        return layer_counts.dense(shape[0], shape[1], args.out_features, bias=not args.no_bias,
                                  activation=args.activation)
    dims = CONV_DIMS[args.kind]
    if len(shape) != 2 + dims:
        layout = "N C_in L" if dims == 1 else "N C_in H W"
        raise ValueError(f"--input: expected {2 + dims} values {layout} for a {args.kind} layer, "
                         f"got {len(shape)}")
    settings = {}
    for name in ("kernel", "stride", "padding", "dilation"):
        values = getattr(args, name)
        if len(values) not in (1, dims):
            raise ValueError(f"--{name}: expected 1 or {dims} values, got {len(values)}")
        settings[name] = tuple(values) * (dims // len(values))
    return layer_counts.conv(shape[0], shape[1], args.out_channels, tuple(shape[2:]), settings["kernel"],
                             stride=settings["stride"], padding=settings["padding"],
                             dilation=settings["dilation"], groups=args.groups, bias=not args.no_bias,
                             activation=args.activation)


def cmd_count(args) -> int:
    try:
        count = compute(args)
    except ValueError as e:
        print(f"python -m kernels count {args.kind}: error: {e}", file=sys.stderr)
        return 2
    print(layer_counts.describe(count))
    return 0


def register(sub):
    """Add `count` with one sub-command per layer kind to the CLI's subparsers."""
    count = sub.add_parser("count", help="output shape, parameters and operations of a layer",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = count.add_subparsers(dest="kind", required=True)
    for kind, dims in CONV_DIMS.items():
        p = kinds.add_parser(kind, help=f"a {kind} layer (torch.nn.Conv{dims}d)")
        layout = "N C_in L" if dims == 1 else "N C_in H W"
        p.add_argument("--input", "-i", type=int, nargs=2 + dims, required=True, metavar="SIZE",
                       help=f"input shape {layout}")
        p.add_argument("--out-channels", "-o", type=int, required=True, help="C_out")
        many = "+" if dims > 1 else 1
        p.add_argument("--kernel", "-k", type=int, nargs=many, required=True, help="filter taps K")
        p.add_argument("--stride", type=int, nargs=many, default=[1])
        p.add_argument("--padding", type=int, nargs=many, default=[0], help="zeros at each end")
        p.add_argument("--dilation", type=int, nargs=many, default=[1])
        p.add_argument("--groups", type=int, default=1, help="groups (C_in for depthwise)")
    p = kinds.add_parser("dense", help="a fully connected layer (torch.nn.Linear)")
    p.add_argument("--input", "-i", type=int, nargs=2, required=True, metavar="SIZE",
                   help="input shape N F_in")
    p.add_argument("--out-features", "-o", type=int, required=True, help="F_out")
    for p in kinds.choices.values():
        p.add_argument("--no-bias", action="store_true", help="no bias term")
        p.add_argument("--activation", choices=layer_counts.ACTIVATIONS,
                       help="a pointwise nonlinearity after the layer (1 operation per output)")
    count.set_defaults(run=cmd_count)

