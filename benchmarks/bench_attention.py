"""Benchmark of the transformer's self-attention: full vs local windows (LMA), 256 to 4096 tokens.

Run it on an idle machine, from the repository root::

    python benchmarks/bench_attention.py                 # CPU, 2 threads, batch 8
    python benchmarks/bench_attention.py --device cuda --json attn.json

One self-attention layer of :mod:`rsgen.models.diffusion_transformer` (``--width`` 256,
``--heads`` 8, 2-D RoPE on) runs forward on grids of 16², 32² and 64² tokens, as full
attention, as LMA in ``--window`` x ``--window`` windows, and as LMA with shifted windows (Swin
mask). Each case runs in a fresh child process so that its peak memory is its own: the peak
resident set size (``ru_maxrss``) minus the one measured after building the inputs on CPU,
``torch.cuda.max_memory_allocated`` on CUDA. Times are the median of ``--repeats`` runs after
one warm-up run. ``--quick`` runs 1 repeat at batch 1 (checks that the script works).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

SIDES = (16, 32, 64)
MODES = ("full", "local", "local+shift")


def run_case(args: argparse.Namespace) -> dict:
    import torch

    from rsgen.models.diffusion_transformer import DiffusionTransformerConfig, SelfAttention

    torch.set_num_threads(args.threads)
    side, mode = args.side, args.mode
    config = DiffusionTransformerConfig(
        grid=[side, side],
        width=args.width,
        heads=args.heads,
        window=args.window,
        spatial_position=True,
        local_attention=mode != "full",
    )
    layer = (
        SelfAttention(config, shift=args.window // 2 if mode == "local+shift" else 0).to(args.device).eval()
    )
    x = torch.randn(args.batch, side * side, args.width, device=args.device)
    cuda = args.device.startswith("cuda")

    def once() -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            layer(x, side, side)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    once()
    times = [once() for _ in range(args.repeats)]
    if cuda:
        peak_mb = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    return {"tokens": side * side, "mode": mode, "ms": 1000 * statistics.median(times), "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="batch 1, 1 repeat: checks the script runs")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--side", type=int, help=argparse.SUPPRESS)  # child process: one case
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats = 1, 1
    if args.side is not None:
        print(json.dumps(run_case(args)))
        return

    passed = [f"--{k}={getattr(args, k)}" for k in ("device", "threads", "batch", "width", "heads", "window")]
    passed.append(f"--repeats={args.repeats}")
    rows = []
    for side in SIDES:
        for mode in MODES:
            child = [sys.executable, __file__, *passed, "--side", str(side), "--mode", mode]
            done = subprocess.run(child, capture_output=True, text=True)
            if done.returncode:
                rows.append(
                    {"tokens": side * side, "mode": mode, "error": done.stderr.strip().splitlines()[-1]}
                )
            else:
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(
        f"self-attention forward, batch {args.batch}, width {args.width}, heads {args.heads}, "
        f"window {args.window}, {args.device} ({args.threads} threads on CPU)"
    )
    print(f"{'tokens':>7} {'mode':<12} {'ms':>10} {'peak MB':>9} {'vs full':>8}")
    full = {}
    for row in rows:
        if "error" in row:
            print(f"{row['tokens']:>7} {row['mode']:<12} error: {row['error']}")
            continue
        full.setdefault(row["tokens"], row["ms"])
        ratio = row["ms"] / full[row["tokens"]]
        print(
            f"{row['tokens']:>7} {row['mode']:<12} {row['ms']:>10.2f} {row['peak_mb']:>9.1f} {ratio:>7.2f}x"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"args": {k: v for k, v in vars(args).items() if k not in ("side", "mode")}, "rows": rows}, f
            )


if __name__ == "__main__":
    main()
