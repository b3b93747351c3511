#!/usr/bin/env python3
"""vit_models.py: the transformer image embedders imgsim's tests and benchmarks export.

Built from torchvision and torch.nn modules with seeded random weights (nothing downloaded):

  vit_small   torchvision VisionTransformer, 64x64, patch 16, 2 layers, 4 heads, width 64 (fast CI)
  vit_b_16    torchvision vit_b_16 (224x224, patch 16, 12 layers, width 768)
  dinov2_s14  a DINOv2-S/14-like encoder: patch 14, 224 -> 256 patch tokens + class token, width
              384, 6 heads, LayerScale, pre-LayerNorm blocks, exact GELU; its output is the class
              token after the final LayerNorm (DINOv2's x_norm_clstoken). --depth sets the blocks
              (12 in DINOv2-S; 2 in CI).
  masked, manual  attention with a mask, and attention written out batch-first (timm style):
              what imgsim refuses, for the refusal tests
  clip_b32    a CLIP-like image tower: patch 32, 224, class embedding added to zeros, ln_pre,
              pre-LayerNorm blocks with quick GELU (x * sigmoid(1.702 x)), ln_post on the class
              token and the final projection (width 768 -> 512; --width/--depth smaller in CI).

Attention is nn.MultiheadAttention (batch_first, need_weights=False), as torchvision's ViT has it.
randomize() gives every LayerNorm, LayerScale, class token, position embedding and head random
values (torchvision starts some at zero, which would hide them from a parity test).

    python3 tests/vit_models.py --arch dinov2_s14 --depth 2 --opset 17 --out d.onnx
"""
import argparse
import inspect
import os

import torch
from torch import nn


class LayerScale(nn.Module):
    def __init__(self, dim, init=1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + ls1(attn(ln1(x))), then x + ls2(mlp(ln2(x)))."""

    def __init__(self, dim, heads, mlp_ratio=4, act=nn.GELU, layer_scale=False, eps=1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), act(), nn.Linear(dim * mlp_ratio, dim))
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.ls1(self.attn(h, h, h, need_weights=False)[0])
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoLike(nn.Module):
    def __init__(self, image=224, patch=14, dim=384, heads=6, depth=12):
        super().__init__()
        n = (image // patch) ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, layer_scale=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        return self.norm(self.blocks(x))[:, 0]


class ClipLike(nn.Module):
    def __init__(self, image=224, patch=32, width=768, heads=12, depth=12, out_dim=512):
        super().__init__()
        n = (image // patch) ** 2
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width ** -0.5)
        self.positional_embedding = nn.Parameter(torch.randn(n + 1, width) * width ** -0.5)
        self.ln_pre = nn.LayerNorm(width)
        self.blocks = nn.Sequential(*[Block(width, heads, act=QuickGELU, eps=1e-5) for _ in range(depth)])
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, out_dim) * width ** -0.5)

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.blocks(self.ln_pre(x))
        return self.ln_post(x[:, 0, :]) @ self.proj


class MaskedBlock(Block):
    """A block whose attention takes a mask (refused by imgsim)."""

    def __init__(self, dim, heads, tokens):
        super().__init__(dim, heads)
        self.register_buffer("mask", torch.triu(torch.full((tokens, tokens), -1e4), diagonal=1))

    def forward(self, x):
        h = self.norm1(x)
        return x + self.attn(h, h, h, attn_mask=self.mask, need_weights=False)[0]


class ManualAttention(nn.Module):
    """timm/DINOv2-style attention written out (qkv Linear, permute with the batch moved): a form
    imgsim does not recognise."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, c))


class Refused(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 16, 16)
        self.block = MaskedBlock(64, 4, 16) if kind == "masked" else ManualAttention(64, 4)

    def forward(self, x):
        return self.block(self.conv(x).flatten(2).transpose(1, 2))[:, 0]


SIZES = {"vit_small": 64, "vit_b_16": 224, "dinov2_s14": 224, "clip_b32": 224, "masked": 64, "manual": 64}


def build(arch, seed, depth=None, width=None):
    """The module for arch, seeded; depth/width override the defaults where the model has them."""
    import torchvision

    torch.manual_seed(seed)
    if arch == "vit_small":
        from torchvision.models.vision_transformer import VisionTransformer

        m = VisionTransformer(image_size=64, patch_size=16, num_layers=depth or 2, num_heads=4, hidden_dim=64,
                              mlp_dim=128, num_classes=10)
    elif arch == "vit_b_16":
        m = torchvision.models.vit_b_16(weights=None)
    elif arch == "dinov2_s14":
        m = DinoLike(depth=depth or 12)
    elif arch == "clip_b32":
        w = width or 768
        m = ClipLike(width=w, heads=max(1, w // 64), depth=depth or 12)
    elif arch in ("masked", "manual"):
        m = Refused(arch)
    else:
        raise SystemExit("vit_models.py: unknown arch %s" % arch)
    randomize(m, seed)
    return m.eval()


def randomize(model, seed):
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("class_token") or name.endswith("cls_token") or "pos_embed" in name or \
                    name.endswith("pos_embedding") or name.endswith(".gamma") or "heads.head" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


def export(model, path, opset, size):
    kwargs = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    tmp = path + ".tmp"
    # not under torch.no_grad(): there nn.MultiheadAttention takes its fused fast path
    # (aten::_native_multi_head_attention), which torch 1.13 cannot export
    torch.onnx.export(model, torch.randn(1, 3, size, size), tmp, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}},
                      opset_version=opset, **kwargs)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", required=True, choices=sorted(SIZES))
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--depth", type=int, default=None)
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    export(build(a.arch, a.seed, a.depth, a.width), a.out, a.opset, SIZES[a.arch])


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")
    main()
