"""Roofline of the lock-step ensemble step: the bytes an update must move against the measured rate.

    python benchmarks/roofline.py                                  # M0 M1 M2 C1, sgd vsgd_l smd adagrad, K = 1, 10, 100
    python benchmarks/roofline.py --benchmarks m2 --rules vsgd_l --ks 1 4 --seconds 1
    python benchmarks/roofline.py --plot-only                      # redraw benchmarks/roofline.png from the CSV

How the bytes are counted (per member and update, float32, ``update_bytes``): the tensors that must
persist from one step to the next, each streamed once, read and written, counted from the rule itself:

* the parameters, read and written (2 P);
* each tensor of the rule's own state (``rule.init``), read and written (2 x its elements; pooled
  ``[K]``-sized statistics add next to nothing).

Not counted: the gradient and the parameter-sized extras the rule declares (bbprop's curvature, SMD's
Hessian-vector product): the compiled step computes them inside its fused loops and never stores them
(the eager step does: the CSV's ``bytes_eager_grad_extras`` is that extra traffic, written and read), nor
the forward pass's read of the weights. So SGD = 2 P, AdaGrad = 4 P, SMD = 4 P, vSGD-b/-g = 6 P, vSGD-l = 10 P
floats (g_bar, v_bar, h_bar, tau): a lower bound on the traffic, which is the roofline's point.
Plain SGD's hand-fused step (``experiments.mlp.FusedSGD``) defers the rank-1 updates of its large matrices and
folds them into the weights once every ``rank`` (16) steps, so a deferred matrix of n weights is counted
2 n / 16 per update, not 2 n (the first count, 2 P, put the H100's SGD at 1.1-4.9x its memory bandwidth:
a count that low is no bound). ``working_set_MB`` is the distinct bytes of a chunk (K x parameters and state).

The limit is this machine's measured bandwidth, one thread (the runner's ``threads=1``), a STREAM "add"
``c = a + b`` (3 arrays): from DRAM (arrays of 64 MB) and from the last-level cache (arrays totalling 12
MB). A chunk whose working set (K x the distinct bytes above) fits the runner's cache budget
(``experiments.run.CPU_CACHE_BYTES``) is held against the cache bandwidth, otherwise against DRAM's. On
CUDA (``--device cuda``) the same, against the GPU's measured copy bandwidth.

The second ceiling is arithmetic (``update_flops``): the operations of one member's update, counted by running
the trainer's eager step (the same rule and network as the compiled one, K = 2, over 32 steps: two of plain SGD's
fold windows) under ``torch.utils.flop_counter.FlopCounterMode`` (matrix products: 2 per multiply-add) and a
dispatch mode that counts every pointwise operation's output elements and every reduction's input elements (1
each; a division, a square root or ``lerp`` counts 1: the count is of operations, not of cycles). The peak is
this machine's measured one-thread matrix product (``machine_flops``: float32 ``torch.mm`` of 256-1024 square
matrices, the best; on CUDA 4096, TF32 off). Both ceilings together are the classic roofline: an update cannot
take less than ``max(bytes / bandwidth, flops / peak)``, so ``fraction_of_roofline`` is the larger of the two
fractions, and ``nearer_ceiling`` names that one (the arithmetic intensity flops/bytes against the ridge point
peak/bandwidth). ``--recount --peak-gflops X`` fills these columns into a CSV measured before they
existed (the rates kept; the peak should be measured on the same machine, ``--peak-gflops measure``).

Writes benchmarks/roofline.csv (one row per rule x benchmark x K, with the runner's K marked),
benchmarks/roofline.png (achieved GB/s against K) and benchmarks/roofline_classic.png (the classic roofline at the
runner's K: achieved GFLOP/s against operations per byte, under both ceilings). Timings on a shared machine are
noisy: take them with the machine quiet. The committed CSV is two runs in one sitting, the grid jobs paused:
``--benchmarks m0 m1 m2 c1 --rules sgd vsgd_l smd adagrad --ks 1 10 --runner-k``, then ``--benchmarks m1 m2 c1 m0
--rules almeida amari vsgd_b vsgd_fd --ks 1 --runner-k`` (rows concatenated).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.throughput import bench_spec, ensemble_rate, ensemble_stepper
from experiments.mlp import FusedSGD, MLPSpec
from experiments.run import CPU_CACHE_BYTES, auto_chunk_size
from experiments.trainer import TENSOR_EXTRAS, state_elements
from vsgd.core import Rule, get_rule

ROOT = Path(__file__).resolve().parents[1]


def update_bytes(rule: Rule, spec: MLPSpec, *, itemsize: int = 4) -> dict[str, int]:
    """Bytes one member's update must move, by part (see the module docstring) and in all (``total``)."""
    P = spec.n_params
    fused = rule.scalar_rate is not None and not rule.extras
    params = 2 * P
    if fused:  # FusedSGD: a deferred matrix is read and written once per fold of `rank` steps
        f = FusedSGD(spec)
        params = 2 * sum((a * b / f.rank if f.deferred(a, b, first=k == 0) else a * b) + b  # weights, biases
                         for k, (a, b) in enumerate(zip(spec.layers[:-1], spec.layers[1:])))
    state = state_elements(rule, spec)
    parts = {"params": round(params * itemsize), "state": 2 * state * itemsize}
    parts["total"] = sum(parts.values())
    parts["distinct"] = (P + state) * itemsize  # one member's parameters and state, each once
    # not in the total: what the eager step also streams (the compiled step keeps them in registers)
    parts["eager_grad_extras"] = (0 if fused else 2 * P + 2 * P * sum(e in TENSOR_EXTRAS for e in rule.extras)) * itemsize
    return parts


NOT_ARITHMETIC = {"copy_", "clone", "fill_", "zero_", "_to_copy", "lift_fresh", "detach", "alias", "zeros_like",
                  "ones_like", "empty_like", "full_like", "scalar_tensor", "where"}  # pointwise-tagged data movement


class _PointwiseCount(TorchDispatchMode):
    """Counts pointwise operations (one per output element) and reductions (one per input element)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if torch.Tag.pointwise in func.tags and func._overloadpacket.__name__ not in NOT_ARITHMETIC:
            self.count += next(t for t in (out if isinstance(out, (tuple, list)) else (out,))
                               if isinstance(t, torch.Tensor)).numel()
        elif torch.Tag.reduction in func.tags:
            self.count += next(a for a in args if isinstance(a, torch.Tensor)).numel()
        return out


def count_flops(fn, repeat: int = 1) -> float:
    """Operations of ``fn()`` (matrix products 2 per multiply-add, pointwise 1 per element), per call."""
    with FlopCounterMode(display=False) as mm, _PointwiseCount() as pw:
        for _ in range(repeat):
            fn()
    return (mm.get_total_flops() + pw.count) / repeat


def update_flops(rule_name: str, spec: MLPSpec, *, K: int = 2, steps: int = 32) -> float:
    """Operations of one member's update (see the module docstring): the eager step, per member and step."""
    one = ensemble_stepper(spec, rule_name, K, compile=False)
    for _ in range(3):  # past the first steps' special cases
        one()
    return count_flops(one, steps) / K


def best_calls_per_s(fn, device: str = "cpu", seconds: float = 0.5) -> float:
    """Calls per second of ``fn()``, the best of 5 windows of ``seconds / 5`` (at least 3 calls each)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    best = 0.0
    for _ in range(5):
        fn()
        sync()
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5 or calls < 3:
            fn()
            calls += 1
        sync()
        best = max(best, calls / (time.perf_counter() - start))
    return best


def machine_flops(device: str = "cpu", seconds: float = 0.5) -> float:
    """FLOP/s of a float32 matrix product (best of sizes and of 5 windows), one thread on the CPU."""
    best = 0.0
    for n in ((4096,) if device.startswith("cuda") else (256, 512, 1024)):
        a, b, c = (torch.rand(n, n, device=device) for _ in range(3))
        best = max(best, 2 * n ** 3 * best_calls_per_s(lambda: torch.mm(a, b, out=c), device, seconds))
    return best


def stream_bandwidth(n: int, device: str = "cpu", seconds: float = 0.5) -> float:
    """Bytes/s of ``c = a + b`` over arrays of ``n`` float32 (3 x 4 n bytes per call), best of 5 windows."""
    a, b, c = (torch.rand(n, device=device) for _ in range(3))
    return 12 * n * best_calls_per_s(lambda: torch.add(a, b, out=c), device, seconds)


def machine_bandwidth(device: str) -> dict[str, float]:
    """{"dram": ..., "cache": ...} in bytes/s (on CUDA: "dram" is the GPU's memory, 256 MB arrays)."""
    if device.startswith("cuda"):
        return {"dram": stream_bandwidth(64 << 20, device), "cache": float("nan")}
    return {"dram": stream_bandwidth(16 << 20), "cache": stream_bandwidth(1 << 20)}


def roofline_row(device: str, name: str, rule_name: str, K: int, runner_k: int, rate: float,
                 bw: dict[str, float], device_name: str = "", *, flops: float = float("nan"),
                 peak: float = float("nan")) -> dict:
    """One CSV row: a measured rate (member-updates/s) held against the bytes counted for it and, where
    ``flops`` (per update) and ``peak`` (FLOP/s) are given, against the arithmetic ceiling too."""
    spec, cfg = bench_spec(name)
    parts = update_bytes(get_rule(rule_name), spec)
    working_set = K * parts["distinct"]
    level = "cache" if working_set <= CPU_CACHE_BYTES and not device.startswith("cuda") else "dram"
    achieved = rate * parts["total"]
    f_mem, f_ops = achieved / bw[level], rate * flops / peak
    has_ops = not math.isnan(f_ops)
    return {
        "device": device, "device_name": device_name, "benchmark": cfg.name, "rule": rule_name, "K": K,
        "runner_K": runner_k, "n_params": spec.n_params, "bytes_per_update": parts["total"],
        **{f"bytes_{k}": v for k, v in parts.items() if k not in ("total", "distinct")},
        "working_set_MB": round(working_set / 1e6, 2), "updates_per_s": round(rate, 1),
        "achieved_GBps": round(achieved / 1e9, 2), "dram_GBps": round(bw["dram"] / 1e9, 2),
        "cache_GBps": round(bw["cache"] / 1e9, 2), "limit": level,
        "fraction_of_dram": round(achieved / bw["dram"], 3),
        "fraction_of_limit": round(f_mem, 3),
        "flops_per_update": round(flops) if has_ops else "", "achieved_GFLOPs": round(rate * flops / 1e9, 2) if has_ops else "",
        "peak_GFLOPs": round(peak / 1e9, 1) if has_ops else "", "fraction_of_compute": round(f_ops, 3) if has_ops else "",
        "fraction_of_roofline": round(max(f_mem, f_ops), 3) if has_ops else round(f_mem, 3),
        "nearer_ceiling": ("compute" if f_ops > f_mem else "memory") if has_ops else "memory (compute not measured)",
    }


def write_rows(rows: list[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def recount(path: str, device_name: str | None = None, peak: float | None = None) -> list[dict]:
    """The rows of a roofline CSV with their byte and operation columns counted again by the current
    ``update_bytes`` and ``update_flops``; the measurements (rate, bandwidths, K, the runner's K, and the peak
    FLOP/s where the CSV has one and ``peak`` is not given) are kept as they are."""
    with open(path) as f:
        old = list(csv.DictReader(f))
    rows, flops = [], {}
    for r in old:
        bw = {"dram": float(r["dram_GBps"]) * 1e9, "cache": float(r["cache_GBps"]) * 1e9}
        pk = peak if peak is not None else float(r.get("peak_GFLOPs") or "nan") * 1e9
        key = (r["benchmark"].lower(), r["rule"])
        if key not in flops and not math.isnan(pk):
            flops[key] = update_flops(r["rule"], bench_spec(key[0])[0])
        rows.append(roofline_row(r["device"], key[0], r["rule"], int(r["K"]), int(r["runner_K"]),
                                 float(r["updates_per_s"]), bw, device_name or r.get("device_name") or "",
                                 flops=flops.get(key, float("nan")), peak=pk))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", nargs="+", default=["m0", "m1", "m2", "c1"])
    ap.add_argument("--rules", nargs="+", default=["sgd", "vsgd_l", "smd", "adagrad"])
    ap.add_argument("--ks", nargs="+", type=int, default=[1, 10, 100])
    ap.add_argument("--runner-k", action="store_true", help="also time each rule at the K the runner picks")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--csv", default=str(ROOT / "benchmarks" / "roofline.csv"))
    ap.add_argument("--png", default=str(ROOT / "benchmarks" / "roofline.png"))
    ap.add_argument("--plot-only", action="store_true", help="redraw the figure from --csv")
    ap.add_argument("--recount", action="store_true",
                    help="count the bytes of --csv's rows again with the current model (rates kept), rewrite it and redraw")
    ap.add_argument("--device-name", help="with --recount: the device's name where the CSV lacks it")
    ap.add_argument("--peak-gflops", help="with --recount: the peak FLOP/s (GFLOP/s) to hold the rows against, or "
                    "'measure' (this machine, now: only for a CSV measured on this machine)")
    args = ap.parse_args()
    if args.plot_only or args.recount:
        if args.recount:
            torch.set_num_threads(1)
            peak = None
            if args.peak_gflops == "measure":  # with the bandwidths, to compare with the CSV's (the same machine?)
                peak, bw = machine_flops(args.device), machine_bandwidth(args.device)
                print(f"measured now, one thread: matrix product {peak / 1e9:.1f} GFLOP/s; DRAM {bw['dram'] / 1e9:.1f} "
                      f"GB/s, cache {bw['cache'] / 1e9:.1f} GB/s (the CSV's bandwidths are kept)")
            elif args.peak_gflops:
                peak = float(args.peak_gflops) * 1e9
            write_rows(recount(args.csv, args.device_name, peak), args.csv)
            print(f"wrote {args.csv}")
        with open(args.csv) as f:
            plot(list(csv.DictReader(f)), args.png)
        return
    torch.set_num_threads(1)
    from experiments.malloc import keep_freed_memory

    keep_freed_memory()
    bw = machine_bandwidth(args.device)
    peak = machine_flops(args.device)
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"measured bandwidth, one thread: DRAM {bw['dram'] / 1e9:.1f} GB/s, cache {bw['cache'] / 1e9:.1f} GB/s; "
          f"matrix product {peak / 1e9:.1f} GFLOP/s", flush=True)
    rows = []
    for name, rule_name in itertools.product(args.benchmarks, args.rules):
        spec, cfg = bench_spec(name)
        rule = get_rule(rule_name)
        fused = rule.scalar_rate is not None and not rule.extras
        runner_k = auto_chunk_size(spec, fused, torch.float32, torch.device(args.device), 10_000, rule=rule)
        ks = sorted(set(args.ks) | ({runner_k} if args.runner_k else set()))
        flops = update_flops(rule_name, spec)
        for K in ks:
            rate = ensemble_rate(spec, rule_name, K, args.seconds, device=args.device)
            r = roofline_row(args.device, name, rule_name, K, runner_k, rate, bw, device_name, flops=flops, peak=peak)
            rows.append(r)
            print(f"{cfg.name:3s} {rule_name:8s} K={K:<4d}{'*' if K == runner_k else ' '} {rate:9,.0f} updates/s "
                  f"{r['achieved_GBps']:6.1f} GB/s = {r['fraction_of_dram']:5.2f} of DRAM, {r['fraction_of_limit']:5.2f} of "
                  f"{r['limit']} (working set {r['working_set_MB']} MB); {r['achieved_GFLOPs']} GFLOP/s = "
                  f"{r['fraction_of_compute']} of the peak", flush=True)
            write_rows(rows, args.csv)  # after every row: a run cut short keeps what it measured
    print(f"wrote {args.csv}")
    plot(rows, args.png)


def plot(rows: list[dict], path: str) -> None:
    """One panel per benchmark: achieved GB/s against K for each rule, the bandwidths as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = list(dict.fromkeys(r["benchmark"] for r in rows))
    rules = list(dict.fromkeys(r["rule"] for r in rows))
    fig, axes = plt.subplots(1, len(benches), figsize=(4 * len(benches) + 1.4, 3.6), sharey=True, squeeze=False,
                             layout="constrained")
    for ax, b in zip(axes[0], benches):
        mine = [r for r in rows if r["benchmark"] == b]
        for rule in rules:
            pts = sorted((int(r["K"]), float(r["achieved_GBps"]), int(r["K"]) == int(r["runner_K"]))
                         for r in mine if r["rule"] == rule)
            if not pts:
                continue
            line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=rule)
            ax.plot([p[0] for p in pts if p[2]], [p[1] for p in pts if p[2]], "*", ms=14, color=line.get_color())
        ax.axhline(float(mine[0]["dram_GBps"]), color="k", ls="--", lw=1, label="DRAM (measured)")
        if mine[0]["cache_GBps"] not in ("nan", "") and float(mine[0]["cache_GBps"]) == float(mine[0]["cache_GBps"]):
            ax.axhline(float(mine[0]["cache_GBps"]), color="grey", ls=":", lw=1, label="L3 cache (measured)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{b} ({mine[0].get('device_name') or mine[0]['device']})")
        ax.set_xlabel("K (members per chunk; * = the runner's)")
    axes[0][0].set_ylabel("achieved GB/s (bytes counted per update)")
    handles = {}  # every rule and line of every panel, once (a rule measured on one panel only is still named)
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), fontsize=7, loc="outside right center")
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")
    plot_classic(rows, str(Path(path).with_name(Path(path).stem + "_classic.png")))


def plot_classic(rows: list[dict], path: str) -> None:
    """The classic roofline at the runner's K: GFLOP/s against operations per byte, under both ceilings."""
    rows = [r for r in rows if r.get("achieved_GFLOPs") not in (None, "") and int(r["K"]) == int(r["runner_K"])]
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7.6, 4.6), layout="constrained")
    peak, dram, cache = (float(rows[0][k]) for k in ("peak_GFLOPs", "dram_GBps", "cache_GBps"))
    intensity = [float(r["flops_per_update"]) / float(r["bytes_per_update"]) for r in rows]
    x = np.logspace(np.log10(min(intensity) / 2), np.log10(max(intensity) * 4), 200)
    ax.plot(x, np.minimum(peak, x * dram), "k--", lw=1, label=f"ceiling: DRAM {dram:.0f} GB/s, peak {peak:.0f} GFLOP/s")
    if not math.isnan(cache):
        ax.plot(x, np.minimum(peak, x * cache), color="grey", ls=":", lw=1, label=f"ceiling: cache {cache:.0f} GB/s")
    markers = dict(zip(dict.fromkeys(r["benchmark"] for r in rows), "osD^vP"))
    colours = dict(zip(dict.fromkeys(r["rule"] for r in rows), plt.get_cmap("tab10").colors))
    for r, ai in zip(rows, intensity):
        ax.plot(ai, float(r["achieved_GFLOPs"]), markers[r["benchmark"]], color=colours[r["rule"]], ms=8,
                mfc="none" if r["limit"] == "dram" else colours[r["rule"]])
    for b, m in markers.items():
        ax.plot([], [], m, color="k", label=b)
    for rule, c in colours.items():
        ax.plot([], [], "s", color=c, label=rule)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("operations per byte counted (flops_per_update / bytes_per_update)")
    ax.set_ylabel("achieved GFLOP/s (one thread)")
    name = rows[0].get("device_name") or rows[0]["device"]
    ax.set_title(f"Roofline at the runner's K ({name}); filled: chunk in cache, open: in DRAM", fontsize=9)
    fig.legend(fontsize=7, loc="outside right center")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
