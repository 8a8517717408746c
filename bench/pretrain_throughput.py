"""Pretraining throughput, peak memory and hardware utilisation of the MAE training step.

For vit-tiny and vit-small (patch 8 at 64x64) at batch 64, in fp32 and with bf16 autocast, one
full optimizer step as `facerep pretrain` runs it (augment-free: masks, forward, loss, backward,
gradient clipping, AdamW) is timed in a fresh process per configuration, so each peak RSS is its
own. FLOPs per step are counted with `torch.utils.flop_counter` (matmuls, convolutions and
attention, forward and backward), and achieved FLOP/s is divided by what a plain large
`torch.matmul` reaches on this machine in the same run and dtype: that ratio is the utilisation.

    python bench/pretrain_throughput.py            # writes bench/results/pretrain_throughput.*
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from machine import describe_machine, write_results
from torch.utils.flop_counter import FlopCounterMode

from facerep.models.masking import random_mask
from facerep.models.registry import create_model
from facerep.train.loop import weight_decay_groups

RESULTS = Path(__file__).parent / "results"
MODELS = ("vit-tiny", "vit-small")
PRECISIONS = ("fp32", "bf16")
BATCH = 64
TARGET_UTILISATION = 0.40


def train_step(model, optimizer, imgs, mask, bf16: bool) -> None:
    """One optimizer step, as the trainer takes it."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss, _, _ = model(imgs, mask=mask)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def measure_config(name: str, precision: str, steps: int) -> dict:
    """Images/s, FLOPs per step and peak RSS of one model and precision (run in its own process)."""
    torch.manual_seed(0)
    model = create_model(name)
    optimizer = torch.optim.AdamW(weight_decay_groups(model, 0.05), lr=1e-4, betas=(0.9, 0.95))
    size = model.config.img_size
    imgs = torch.randn(BATCH, 3, size, size)
    mask = random_mask(BATCH, model.num_patches, 0.75, torch.Generator().manual_seed(0)).mask
    bf16 = precision == "bf16"
    with FlopCounterMode(display=False) as counter:
        train_step(model, optimizer, imgs, mask, bf16)
    flops = counter.get_total_flops()
    for _ in range(2):  # warm-up: allocator, oneDNN kernels
        train_step(model, optimizer, imgs, mask, bf16)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step(model, optimizer, imgs, mask, bf16)
        times.append(time.perf_counter() - start)
    best = min(times)
    return {
        "model": name,
        "precision": precision,
        "batch": BATCH,
        "img_size": size,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "step_s_best": round(best, 4),
        "step_s_median": round(sorted(times)[len(times) // 2], 4),
        "images_per_s": round(BATCH / best, 1),
        "gflop_per_step": round(flops / 1e9, 2),
        "achieved_gflops": round(flops / best / 1e9, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a plain large square matmul: the machine's practical peak for that dtype."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        torch.matmul(a, b)
    best = min(_timed(lambda: torch.matmul(a, b)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_in_subprocess(name: str, precision: str, steps: int) -> dict:
    """Measure one configuration in a fresh interpreter, so peak RSS is its own."""
    command = [sys.executable, __file__, "--one", name, precision, "--steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(report: dict) -> str:
    """The results as a Markdown table."""
    lines = [
        "# Pretraining throughput (CPU)",
        "",
        f"{report['machine']['date']} · {report['machine']['nproc']} cores "
        f"({report['machine']['cpu']}) · torch {report['machine']['torch']}, "
        f"{report['machine']['threads']} threads · load average at start "
        f"{report['machine']['load_average'][0]:.2f}",
        "",
        f"One full optimizer step at batch {BATCH}, mask ratio 0.75. Plain large matmul in the "
        f"same run: fp32 {report['matmul_gflops']['fp32']:.0f} GFLOP/s, bf16 "
        f"{report['matmul_gflops']['bf16']:.0f} GFLOP/s. Utilisation = achieved / matmul of "
        f"the same dtype; target {TARGET_UTILISATION:.0%}.",
        "",
        "| model | precision | params (M) | images/s | GFLOP/step | achieved GFLOP/s "
        "| utilisation | peak RSS (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["configs"]:
        lines.append(
            f"| {row['model']} | {row['precision']} | {row['params_m']} | {row['images_per_s']} "
            f"| {row['gflop_per_step']} | {row['achieved_gflops']} | {row['utilisation']:.0%} "
            f"| {row['peak_rss_mb']} |"
        )
    lines += ["", "Numbers are noisy on 2 shared cores; compare ratios within one run."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "PRECISION"), help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per configuration")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_config(*args.one, steps=args.steps)))
        return
    report = {
        "machine": describe_machine(),
        "matmul_gflops": {
            "fp32": matmul_gflops(torch.float32),
            "bf16": matmul_gflops(torch.bfloat16),
        },
    }
    configs = []
    for name in MODELS:
        for precision in PRECISIONS:
            row = run_in_subprocess(name, precision, args.steps)
            row["utilisation"] = row["achieved_gflops"] / report["matmul_gflops"][precision]
            print(json.dumps(row), flush=True)
            configs.append(row)
    report["configs"] = configs
    text = markdown(report)
    write_results(RESULTS, "pretrain_throughput", report, text)
    print(text)


if __name__ == "__main__":
    main()
