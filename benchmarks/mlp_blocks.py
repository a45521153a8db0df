"""Where an MLP block's CPU time goes, and which row-block size and inference form is fastest.

    .venv/bin/python benchmarks/mlp_blocks.py [--rows 131072] [--threads 1] [--rounds 5] [--no-compile]

For the shapes of the shipped models (embedding 4 -> 128 x 4 -> 12, filter 9 -> 128 x 3 -> 1,
InteractionGNN edge network 192 -> 64 x 2 -> 64) on ``--rows`` random rows, single-threaded:

- ``eager B``: the MLP (Linear -> LayerNorm -> tanh blocks) called on blocks of B rows, and on
  the whole tensor at once;
- ``matmuls only``: the same Linear layers without LayerNorm and tanh (with and without the
  bias, which ``addmm`` first copies into its output): the ceiling for this model on this CPU;
- ``jit.freeze``: ``torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(mlp)))``;
- ``torch.compile`` (inductor, C++ codegen, fused LayerNorm + tanh): its first-call (compile)
  time is reported too.

Each variant runs ``--rounds`` times, interleaved with the others, and the best round counts
(the machine is shared). FLOPs are the Linear layers' (2 per multiply-add); % is of the fp32
matmul peak (torch 2048 x 2048, best over the rounds). Writes benchmarks/results/mlp_blocks.md.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import torch
from pipeline_common import machine, matmul_peak_gflops, write_table
from torch import nn

from trackflow.pipeline.mlp import CPU_BLOCK_ROWS, count_matmul_flops, make_mlp

#: (name, in, hidden, layers, out) of the shipped models' MLPs
SHAPES = (
    ("embedding", 4, 128, 4, 12),
    ("filter", 9, 128, 3, 1),
    ("gnn edge network", 192, 64, 2, 64),
)
BLOCKS = (512, 1024, 2048, 4096, 8192)


def matmuls_only(mlp: nn.Sequential, bias: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    linears = [m for m in mlp if isinstance(m, nn.Linear)]

    def run(x: torch.Tensor) -> torch.Tensor:
        for m in linears:
            x = torch.addmm(m.bias, x, m.weight.T) if bias else x @ m.weight.T
        return x

    return run


def in_blocks(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, rows: int
) -> Callable[[], object]:
    """A call of ``model`` on ``x`` in blocks of ``rows`` rows."""

    def run() -> object:
        return [model(x[start : start + rows]) for start in range(0, len(x), rows)]

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=131_072)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    variants: dict[tuple[str, str], Callable[[], object]] = {}
    flops: dict[str, int] = {}
    compile_s: dict[str, float] = {}
    for name, fin, hidden, layers, fout in SHAPES:
        x = torch.randn(args.rows, fin)
        mlp = make_mlp(fin, hidden, layers, fout).eval()
        mlp.block_rows = 1 << 62  # the caller's blocks only
        for p in mlp.parameters():
            p.requires_grad_(False)
        flops[name] = count_matmul_flops(mlp, args.rows)
        for rows in BLOCKS:
            variants[name, f"eager, {rows} rows"] = in_blocks(mlp, x, rows)
        variants[name, "eager, whole tensor"] = in_blocks(mlp, x, args.rows)
        rows = CPU_BLOCK_ROWS
        variants[name, f"matmuls only (addmm with bias), {rows} rows"] = in_blocks(
            matmuls_only(mlp, True), x, rows
        )
        variants[name, f"matmuls only (no bias), {rows} rows"] = in_blocks(matmuls_only(mlp, False), x, rows)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript is deprecated
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(mlp)))
        variants[name, f"jit.freeze + optimize_for_inference, {rows} rows"] = in_blocks(frozen, x, rows)
        if not args.no_compile:
            compiled = torch.compile(mlp, dynamic=False)
            start = time.perf_counter()
            with torch.inference_mode():
                compiled(x[:rows])
            compile_s[name] = time.perf_counter() - start
            variants[name, f"torch.compile, {rows} rows"] = in_blocks(compiled, x, rows)

    best = dict.fromkeys(variants, float("inf"))
    peak = 0.0
    for _ in range(args.rounds):
        peak = max(peak, matmul_peak_gflops(args.threads))
        for key, run in variants.items():
            with torch.inference_mode():
                start = time.perf_counter()
                run()
                best[key] = min(best[key], time.perf_counter() - start)

    rows_out = []
    for (name, variant), seconds in best.items():
        rate = flops[name] / seconds / 1e9
        rows_out.append([name, variant, f"{1e3 * seconds:.1f}", f"{rate:.1f}", f"{100 * rate / peak:.0f} %"])
    compiled_note = (
        "torch.compile first call (compile) time: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in compile_s.items())
        + "; "
        if compile_s
        else ""
    )
    notes = (
        f"Machine: {machine()}. {args.rows} rows, {args.threads} thread(s), best of {args.rounds} "
        f"interleaved rounds. fp32 matmul peak (2048 x 2048): {peak:.1f} GFLOP/s. "
        f"{compiled_note}the pipeline's CPU block is {CPU_BLOCK_ROWS} rows. Command: "
        f"`.venv/bin/python benchmarks/mlp_blocks.py --rows {args.rows} --threads {args.threads} "
        f"--rounds {args.rounds}{' --no-compile' if args.no_compile else ''}`."
    )
    write_table(
        "mlp_blocks",
        "MLP inference on CPU: block size, the matmul ceiling, jit.freeze, torch.compile",
        ["MLP", "variant", "time (ms)", "GFLOP/s", "of peak"],
        rows_out,
        notes,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
