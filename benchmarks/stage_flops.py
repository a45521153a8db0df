"""Per-stage time, achieved FLOP/s of the MLP stages against the fp32 matmul peak measured in the
same run, and peak memory (RSS) per stage, on one full real TrackML event (~100k hits).

    .venv/bin/python benchmarks/stage_flops.py [--event-index 0] [--threads 1] [--models DIR]
        [--profile]

FLOPs are those of the matrix products (torch.utils.flop_counter, 2 per multiply-add), counted
in a second, untimed pass; element-wise work (LayerNorm, tanh, gathers) is not counted, so the
percentage says how close the stage gets to spending all its time in matmuls at peak. Peak RSS
is the process high-water mark (VmHWM) reset before each stage, so it is that stage's own peak
(interpreter, libraries and models included). ``--profile`` adds where each MLP stage's time
goes: torch.profiler's self CPU time per operator in a third pass (matmuls ``addmm``/``addmm_``/
``mm``, ``native_layer_norm``, ``tanh``, ``copy_`` (addmm's bias copy), ``index_select``
(gathers), ``scatter_add_`` (the GNN's message sums), ...). Writes benchmarks/results/stage_flops.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from pipeline_common import (
    RESULTS_DIR,
    benchmark_pipeline,
    machine,
    matmul_peak_gflops,
    real_event,
    reset_peak_rss,
    rss_mib,
    write_table,
)
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from trackflow.pipeline import STAGE_NAMES, Pipeline, set_threads
from trackflow.pipeline.mlp import CPU_BLOCK_ROWS

MLP_STAGES = ("embedding", "filter", "gnn")
#: operators named in the profile table; the rest are summed as "other"
PROFILE_OPS = (
    "aten::addmm",
    "aten::addmm_",
    "aten::mm",
    "aten::native_layer_norm",
    "aten::tanh",
    "aten::copy_",
    "aten::index_select",
    "aten::cat",
    "aten::scatter_add_",
)


def _addmm_inplace_flop(self_shape, a_shape, b_shape, out_shape=None, **kwargs) -> int:
    """FLOPs of ``c.addmm_(a, b)``: torch's counter knows ``addmm`` but not its in-place form,
    which the GNN uses to accumulate edge states."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


#: matmul variants torch.utils.flop_counter does not count by itself
EXTRA_FLOPS = {torch.ops.aten.addmm_: _addmm_inplace_flop}


def op_shares(pipeline: Pipeline, event: object) -> dict[str, dict[str, float]]:
    """Self CPU time share (0-1) of each operator in each MLP stage (torch.profiler, one pass)."""
    shares = {}
    graph = pipeline.prepare(event)
    for name in STAGE_NAMES:
        if name not in MLP_STAGES:
            graph = pipeline.run_stage(name, graph)
            continue
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            graph = pipeline.run_stage(name, graph)
        times = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
        total = sum(times.values()) or 1.0
        stage = {op: times.get(op, 0.0) / total for op in PROFILE_OPS}
        stage["other"] = 1.0 - sum(stage.values())
        shares[name] = stage
    return shares


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--event-index", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", action="store_true", help="add the per-operator time shares")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best time per stage counts")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    event = real_event(args.event_index)
    pipeline, description = benchmark_pipeline(
        args.models, device=args.device, threads=args.threads, calibration_event=event
    )
    # the machine's speed drifts (shared VM): the peak is measured before every timed run and
    # after the last, the largest counts; each stage's best time over the runs counts
    peaks = []
    best = dict.fromkeys(STAGE_NAMES, float("inf"))
    peak_rss, can_reset = {}, True
    for repeat in range(max(args.repeats, 1)):
        peaks.append(matmul_peak_gflops(args.threads))
        graph = pipeline.prepare(event)
        for name in STAGE_NAMES:
            if repeat == 0:
                can_reset = reset_peak_rss() and can_reset
            graph = pipeline.run_stage(name, graph)
            if repeat == 0:
                peak_rss[name] = rss_mib("VmHWM")
        tracks = pipeline.finish(graph)
        best = {name: min(best[name], tracks.timings[name]) for name in STAGE_NAMES}
        if repeat == 0:
            process_peak = rss_mib("VmHWM") if not can_reset else max(peak_rss.values())

    # FLOPs of each MLP stage on the same inputs (untimed pass)
    flops = {}
    graph = pipeline.prepare(event)
    for name in STAGE_NAMES:
        if name in MLP_STAGES:
            with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOPS) as counter:
                graph = pipeline.run_stage(name, graph)
            flops[name] = counter.get_total_flops()
        else:
            graph = pipeline.run_stage(name, graph)
    peaks.append(matmul_peak_gflops(args.threads))
    peak = max(peaks)
    shares = op_shares(pipeline, event) if args.profile else {}

    rows = []
    for name in STAGE_NAMES:
        seconds = best[name]
        row = [name, f"{seconds:.3f}"]
        if name in flops:
            rate = flops[name] / seconds / 1e9
            row += [f"{flops[name] / 1e9:.1f}", f"{rate:.1f}", f"{100 * rate / peak:.0f} %"]
        else:
            row += ["-", "-", "-"]
        row.append(f"{peak_rss[name]:.0f}")
        rows.append(row)
    total = sum(best.values())
    rows.append(["total", f"{total:.3f}", "", "", "", f"{max(peak_rss.values()):.0f}"])
    counts = ", ".join(f"{k} {v}" for k, v in tracks.counts.items())
    notes = (
        f"Machine: {machine()}. Event {event.event_id} ({event.n_hits} hits); {counts}. "
        f"{description}. Device {args.device}, {args.threads} thread(s); best of "
        f"{args.repeats} runs per stage. fp32 matmul peak (torch 2048x2048, best of 5, before "
        f"each run and after the last; the largest counts): "
        f"{' / '.join(f'{p:.1f}' for p in peaks)} GFLOP/s. Peak RSS (first run) per stage: "
        f"VmHWM reset before each stage"
        f"{'' if can_reset else ' (reset not permitted: cumulative peak)'}; whole run "
        f"{process_peak:.0f} MiB. MLP row blocks on CPU: {CPU_BLOCK_ROWS}. Command: "
        f"`.venv/bin/python benchmarks/stage_flops.py --event-index {args.event_index} "
        f"--threads {args.threads} --repeats {args.repeats}"
        f"{'' if args.models is None else f' --models {args.models}'}"
        f"{' --profile' if args.profile else ''}`."
    )
    text = write_table(
        "stage_flops",
        "Per-stage time, FLOP/s and peak RSS on a full event",
        ["stage", "time (s)", "GFLOP", "GFLOP/s", "of peak", "peak RSS (MiB)"],
        rows,
        notes,
    )
    if shares:
        ops = [*PROFILE_OPS, "other"]
        lines = ["", "## Where the time goes (share of self CPU time, torch.profiler)", ""]
        lines.append("| stage | " + " | ".join(op.removeprefix("aten::") for op in ops) + " |")
        lines.append("|" + "|".join("---" for _ in range(len(ops) + 1)) + "|")
        for name, stage in shares.items():
            lines.append(f"| {name} | " + " | ".join(f"{100 * stage[op]:.0f} %" for op in ops) + " |")
        extra = "\n".join(lines) + "\n"
        print(extra)
        (RESULTS_DIR / "stage_flops.md").write_text(text + extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
