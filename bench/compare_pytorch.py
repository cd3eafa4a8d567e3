#!/usr/bin/python3
"""PyTorch side of bench/compare, and the table it prints.

  compare_pytorch.py run --model PRESET --batch N [--train] [--warmup W] [--steps S] [--threads T]
      builds the preset as vit_pytorch.vit.ViT 1.23.6 would (written out below in plain PyTorch, since
      vit-pytorch cannot be installed here) or, for the Swin presets, with torchvision's builder (Debian's
      python3-torchvision 0.14), times W + S steps and prints one JSON line with the same keys
      as `vit bench --json` (median_ms, min_ms, max_ms, images_per_s, gflops, times_ms, ...).
  compare_pytorch.py table FILE
      reads the JSON lines bench/compare collected (each tagged with "side" and "row") and prints the
      markdown table: per row, the median over every timed step of every round, the spread (min-max), and
      the largest peak resident set (the whole process: runtime, model, activations) of each side.

FLOP convention as VitSharp.Models.Flops: 2*m*n*k per Linear (patch embedding and head included),
2*(2*N^2*D) per head per layer for attention, training step = 3x forward.
"""
import argparse
import json
import resource
import statistics
import sys
import time

# name: (image, patch, classes, dim, depth, heads, mlp, dim_head, channels) -- as src/VitSharp/Models/Presets.cs
PRESETS = {
    "vit-fmnist": (28, 4, 10, 96, 6, 3, 192, 32, 1),
    "vit-fmnist-128": (28, 4, 10, 128, 6, 4, 256, 32, 1),
    "vit-b16": (224, 16, 1000, 768, 12, 12, 3072, 64, 3),
    "vit-b32": (224, 32, 1000, 768, 12, 12, 3072, 64, 3),
    "vit-l16": (224, 16, 1000, 1024, 24, 16, 4096, 64, 3),
    "deit-ti16": (224, 16, 1000, 192, 12, 3, 768, 64, 3),
    "deit-s16": (224, 16, 1000, 384, 12, 6, 1536, 64, 3),
    "deit-b16": (224, 16, 1000, 768, 12, 12, 3072, 64, 3),
}


# Swin presets: torchvision's builders (torchvision.models.swin_t, ...), random weights; image side as src/VitSharp/Models/Presets.cs.
SWIN = {"swin_t": 224, "swin_s": 224, "swin_b": 224, "swin_v2_t": 256, "swin_v2_s": 256, "swin_v2_b": 256}


def swin_forward_flops(model, image, batch):
    """As VitSharp.Models.Flops.SwinForwardFlops: the patch conv as a Linear; per block qkv, QK^T and A.V, proj over the
    map padded to whole windows, the MLP over the unpadded map; each merging's reduction; the head."""
    import torch
    conv = model.features[0][0]
    c, ph, pw = conv.out_channels, conv.kernel_size[0], conv.kernel_size[1]
    h, w = image // ph, image // pw
    total = 2 * batch * h * w * (conv.in_channels * ph * pw) * c
    stages = [m for m in model.features[1:] if isinstance(m, torch.nn.Sequential)]
    for i, stage in enumerate(stages):
        attn = stage[0].attn
        wh, ww = attn.window_size
        c = attn.qkv.in_features
        hidden = stage[0].mlp[0].out_features
        padded = ((h + wh - 1) // wh * wh) * ((w + ww - 1) // ww * ww)
        n = wh * ww
        per_block = 2 * batch * padded * c * 3 * c + batch * (padded // n) * 2 * (2 * n * n * c) \
            + 2 * batch * padded * c * c + 2 * batch * h * w * c * hidden * 2
        total += len(stage) * per_block
        if i == len(stages) - 1:
            break
        h, w = (h + 1) // 2, (w + 1) // 2
        total += 2 * batch * h * w * (4 * c) * (2 * c)
    return total + 2 * batch * c * model.head.out_features


def forward_flops(image, patch, classes, dim, depth, heads, mlp, dim_head, channels, batch):
    patches = (image // patch) ** 2
    tokens = patches + 1
    inner = heads * dim_head
    patch_dim = channels * patch * patch
    total = 2 * batch * patches * patch_dim * dim
    layer = 2 * batch * tokens * dim * 3 * inner + batch * heads * 2 * (2 * tokens * tokens * dim_head) \
        + 2 * batch * tokens * dim * mlp * 2
    if not (heads == 1 and dim_head == dim):
        layer += 2 * batch * tokens * inner * dim
    total += depth * layer
    if classes > 0:
        total += 2 * batch * dim * classes
    return total


def build_model(image, patch, classes, dim, depth, heads, mlp, dim_head, channels):
    import torch
    from torch import nn

    class FeedForward(nn.Module):
        def __init__(self, dim, hidden_dim, dropout=0.):
            super().__init__()
            self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(hidden_dim, dim), nn.Dropout(dropout))

        def forward(self, x):
            return self.net(x)

    class Attention(nn.Module):
        def __init__(self, dim, heads=8, dim_head=64, dropout=0.):
            super().__init__()
            inner_dim = dim_head * heads
            project_out = not (heads == 1 and dim_head == dim)
            self.heads = heads
            self.scale = dim_head ** -0.5
            self.norm = nn.LayerNorm(dim)
            self.attend = nn.Softmax(dim=-1)
            self.dropout = nn.Dropout(dropout)
            self.to_qkv = nn.Linear(dim, inner_dim * 3, bias=False)
            self.to_out = nn.Sequential(nn.Linear(inner_dim, dim), nn.Dropout(dropout)) if project_out else nn.Identity()

        def forward(self, x):
            x = self.norm(x)
            b, n, _ = x.shape
            q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
            dots = torch.matmul(q, k.transpose(-1, -2)) * self.scale
            attn = self.dropout(self.attend(dots))
            out = torch.matmul(attn, v)                          # b h n d
            out = out.transpose(1, 2).reshape(b, n, -1)          # b n (h d)
            return self.to_out(out)

    class Transformer(nn.Module):
        def __init__(self, dim, depth, heads, dim_head, mlp_dim, dropout=0.):
            super().__init__()
            self.norm = nn.LayerNorm(dim)
            self.layers = nn.ModuleList([nn.ModuleList([Attention(dim, heads, dim_head, dropout),
                                                        FeedForward(dim, mlp_dim, dropout)]) for _ in range(depth)])

        def forward(self, x):
            for attn, ff in self.layers:
                x = attn(x) + x
                x = ff(x) + x
            return self.norm(x)

    class Patchify(nn.Module):
        """einops Rearrange('b c (h p1) (w p2) -> b (h w) (p1 p2 c)')."""
        def __init__(self, p1, p2):
            super().__init__()
            self.p1, self.p2 = p1, p2

        def forward(self, img):
            b, c, hh, ww = img.shape
            h, w = hh // self.p1, ww // self.p2
            x = img.reshape(b, c, h, self.p1, w, self.p2).permute(0, 2, 4, 3, 5, 1)
            return x.reshape(b, h * w, self.p1 * self.p2 * c)

    class ViT(nn.Module):
        def __init__(self, *, image_size, patch_size, num_classes, dim, depth, heads, mlp_dim, pool='cls', channels=3,
                     dim_head=64, dropout=0., emb_dropout=0.):
            super().__init__()
            num_patches = (image_size // patch_size) ** 2
            patch_dim = channels * patch_size * patch_size
            self.to_patch_embedding = nn.Sequential(Patchify(patch_size, patch_size), nn.LayerNorm(patch_dim),
                                                    nn.Linear(patch_dim, dim), nn.LayerNorm(dim))
            self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, dim))
            self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
            self.dropout = nn.Dropout(emb_dropout)
            self.transformer = Transformer(dim, depth, heads, dim_head, mlp_dim, dropout)
            self.pool = pool
            self.to_latent = nn.Identity()
            self.mlp_head = nn.Linear(dim, num_classes)

        def forward(self, img):
            x = self.to_patch_embedding(img)
            b, n, _ = x.shape
            cls_tokens = self.cls_token.expand(b, -1, -1)
            x = torch.cat((cls_tokens, x), dim=1)
            x = x + self.pos_embedding[:, :(n + 1)]
            x = self.dropout(x)
            x = self.transformer(x)
            x = x.mean(dim=1) if self.pool == 'mean' else x[:, 0]
            return self.mlp_head(self.to_latent(x))

    return ViT(image_size=image, patch_size=patch, num_classes=classes, dim=dim, depth=depth, heads=heads,
               mlp_dim=mlp, channels=channels, dim_head=dim_head)


def run(args):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model in SWIN:
        import torchvision.models
        model = getattr(torchvision.models, args.model)()
        image, classes, channels = SWIN[args.model], 1000, 3
        flops_forward = swin_forward_flops(model, image, args.batch)
    else:
        cfg = PRESETS[args.model]
        image, _, classes, *_, channels = cfg
        model = build_model(*cfg)
        flops_forward = forward_flops(*cfg, args.batch)
    images = torch.randn(args.batch, channels, image, image, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(args.batch) % classes
    if args.train:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    else:
        model.eval()
    times = []
    for it in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        if args.train:
            opt.zero_grad(set_to_none=False)
            loss = F.cross_entropy(model(images), labels, label_smoothing=0.1)
            loss.backward()
            opt.step()
        else:
            with torch.inference_mode():
                model(images)
        ms = (time.perf_counter() - t0) * 1000
        if it >= args.warmup:
            times.append(ms)
    med = statistics.median(times)
    flops = flops_forward * (3 if args.train else 1)
    print(json.dumps({
        "model": args.model, "batch": args.batch, "train": args.train, "threads": torch.get_num_threads(),
        "warmup": args.warmup, "steps": args.steps, "median_ms": round(med, 3), "min_ms": round(min(times), 3),
        "max_ms": round(max(times), 3), "images_per_s": round(args.batch * 1000 / med, 3),
        "gflop_per_step": round(flops / 1e9, 4), "gflops": round(flops / 1e6 / med, 3),
        "times_ms": [round(t, 3) for t in times], "torch": torch.__version__,
        # Peak resident set of the whole process (kB on Linux), as vit bench's VmHWM.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


def table(path):
    rows = {}    # row label -> side -> list of step times
    order = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r["row"] not in rows:
                rows[r["row"]] = {"vitsharp": [], "pytorch": [], "batch": r["batch"], "gflop": r["gflop_per_step"], "rounds": {},
                                  "rss": {"vitsharp": [], "pytorch": []}}
                order.append(r["row"])
            rows[r["row"]][r["side"]] += r["times_ms"]
            if "peak_rss_mb" in r:
                rows[r["row"]]["rss"][r["side"]].append(r["peak_rss_mb"])
            rows[r["row"]]["rounds"][r["side"]] = rows[r["row"]]["rounds"].get(r["side"], 0) + 1
    print("| row | VitSharp median ms (min–max) | PyTorch median ms (min–max) | VitSharp images/s | PyTorch images/s "
          "| VitSharp GFLOP/s | PyTorch GFLOP/s | PyTorch ÷ VitSharp time | peak RSS MB VitSharp / PyTorch |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label in order:
        r = rows[label]
        cells = [label]
        meds = {}
        for side in ("vitsharp", "pytorch"):
            t = r[side]
            if not t:
                cells.append("–")
                continue
            meds[side] = statistics.median(t)
            cells.append(f"{meds[side]:.1f} ({min(t):.1f}–{max(t):.1f})")
        for side in ("vitsharp", "pytorch"):
            cells.append(f"{r['batch'] * 1000 / meds[side]:.1f}" if side in meds else "–")
        for side in ("vitsharp", "pytorch"):
            cells.append(f"{r['gflop'] * 1000 / meds[side]:.1f}" if side in meds else "–")
        cells.append(f"{meds['pytorch'] / meds['vitsharp']:.2f}×" if len(meds) == 2 else "–")
        rss = r["rss"]
        cells.append(" / ".join(f"{max(rss[side]):.0f}" if rss[side] else "–" for side in ("vitsharp", "pytorch")))
        print("| " + " | ".join(cells) + " |")
    counts = {label: (len(rows[label]["vitsharp"]), len(rows[label]["pytorch"]), rows[label]["rounds"]) for label in order}
    print()
    print("Timed steps per row (VitSharp, PyTorch; rounds): " +
          "; ".join(f"{k}: {v[0]}, {v[1]}; {v[2].get('vitsharp', 0)}+{v[2].get('pytorch', 0)}" for k, v in counts.items()))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", required=True, choices=sorted(PRESETS) + sorted(SWIN))
    r.add_argument("--batch", type=int, required=True)
    r.add_argument("--train", action="store_true")
    r.add_argument("--warmup", type=int, default=2)
    r.add_argument("--steps", type=int, default=5)
    r.add_argument("--threads", type=int, default=2)
    t = sub.add_parser("table")
    t.add_argument("file")
    a = p.parse_args()
    if a.cmd == "run":
        run(a)
    else:
        table(a.file)


if __name__ == "__main__":
    sys.exit(main())
