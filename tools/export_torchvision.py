#!/usr/bin/env python3
"""export_torchvision.py: export a torchvision classification model to ONNX for imgsim.

The export is exactly the one of the Python pipeline imgsim replaces:

    torch.onnx.export(model, dummy, path, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}},
                      opset_version=13)

with the model in eval() mode and its ImageNet classifier head attached (imgsim picks the input
of the final fully connected layer as the embedding by default).

    python3 tools/export_torchvision.py                      # resnet50, ImageNet weights
    python3 tools/export_torchvision.py --arch resnet18 --weights none --seed 1 --out r18.onnx

--weights DEFAULT downloads torchvision's best ImageNet weights (needs internet the first time);
any other weights enum name of the model (IMAGENET1K_V1, ...) works too; `none` keeps the
random initialisation (seeded by --seed). --randomize-bn gives every BatchNorm random running
statistics and affine parameters so that BatchNorm folding is exercised by parity tests (and
LayerNorms and ConvNeXt's layer scales random values too).

Works with torchvision 0.13+ (the weights= API; Debian's 0.14 included) and newer PyTorch,
where the TorchScript exporter is asked for explicitly (dynamo=False).
"""
import argparse
import inspect
import os
import sys


def build_model(arch, weights, seed):
    import torch
    import torchvision

    fn = getattr(torchvision.models, arch, None)
    if fn is None or not callable(fn):
        sys.exit(f"export_torchvision.py: unknown torchvision model '{arch}'")
    torch.manual_seed(seed)
    w = None if weights.lower() == "none" else weights
    return fn(weights=w)


def randomize_bn(model, seed):
    """Random running stats and affine parameters for every BatchNorm (for folding tests), random
    affine parameters for every LayerNorm and a random layer scale (ConvNeXt's 1e-6 would hide
    each block behind its residual)."""
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
                    m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
            elif isinstance(m, torch.nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            ls = getattr(m, "layer_scale", None)
            if isinstance(ls, torch.nn.Parameter):
                ls.copy_(torch.rand(ls.shape, generator=gen) * 0.5 + 0.25)


def export(model, path, opset, size):
    import torch

    model.eval()
    h, w = size
    dummy = torch.randn(1, 3, h, w)
    kwargs = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript exporter the pipeline used
    tmp = path + ".tmp"
    with torch.no_grad():
        torch.onnx.export(model, dummy, tmp, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}},
                          opset_version=opset, **kwargs)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="resnet50", help="torchvision model name (default resnet50)")
    ap.add_argument("--weights", default="DEFAULT",
                    help="DEFAULT (ImageNet), a weights enum name, or none for random weights")
    ap.add_argument("--opset", type=int, default=13, help="ONNX opset (default 13; imgsim reads 11..18)")
    ap.add_argument("--out", default=None, help="output file (default ARCH.onnx)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    ap.add_argument("--randomize-bn", action="store_true",
                    help="random BatchNorm running statistics and affine parameters")
    ap.add_argument("--image-size", default="224",
                    help="input size: N (N x N) or HxW (default 224; the model declares it)")
    args = ap.parse_args()

    try:
        hw = [int(t) for t in args.image_size.lower().split("x")]
        if len(hw) == 1:
            hw *= 2
        if len(hw) != 2 or min(hw) < 1:
            raise ValueError
    except ValueError:
        sys.exit(f"export_torchvision.py: --image-size '{args.image_size}': expected N or HxW")
    out = args.out or f"{args.arch}.onnx"
    model = build_model(args.arch, args.weights, args.seed)
    if args.randomize_bn:
        randomize_bn(model, args.seed)
    export(model, out, args.opset, hw)
    n = sum(p.numel() for p in model.parameters())
    print(f"export_torchvision.py: wrote {out} ({args.arch}, weights {args.weights}, opset {args.opset}, "
          f"{n} parameters, {os.path.getsize(out) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
