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

Writes benchmarks/roofline.csv (one row per rule x benchmark x K, with the runner's K marked) and
benchmarks/roofline.png. Timings on a shared machine are noisy: take them with the machine quiet.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import time
from pathlib import Path

import torch

from benchmarks.throughput import bench_spec, ensemble_rate
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


def stream_bandwidth(n: int, device: str = "cpu", seconds: float = 0.5) -> float:
    """Bytes/s of ``c = a + b`` over arrays of ``n`` float32 (3 x 4 n bytes per call), best of 5 windows."""
    a, b, c = (torch.rand(n, device=device) for _ in range(3))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    best = 0.0
    for _ in range(5):
        torch.add(a, b, out=c)
        sync()
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5 or calls < 3:
            torch.add(a, b, out=c)
            calls += 1
        sync()
        best = max(best, 12 * n * calls / (time.perf_counter() - start))
    return best


def machine_bandwidth(device: str) -> dict[str, float]:
    """{"dram": ..., "cache": ...} in bytes/s (on CUDA: "dram" is the GPU's memory, 256 MB arrays)."""
    if device.startswith("cuda"):
        return {"dram": stream_bandwidth(64 << 20, device), "cache": float("nan")}
    return {"dram": stream_bandwidth(16 << 20), "cache": stream_bandwidth(1 << 20)}


def roofline_row(device: str, name: str, rule_name: str, K: int, runner_k: int, rate: float,
                 bw: dict[str, float], device_name: str = "") -> dict:
    """One CSV row: a measured rate (member-updates/s) held against the bytes counted for it."""
    spec, cfg = bench_spec(name)
    parts = update_bytes(get_rule(rule_name), spec)
    working_set = K * parts["distinct"]
    level = "cache" if working_set <= CPU_CACHE_BYTES and not device.startswith("cuda") else "dram"
    achieved = rate * parts["total"]
    return {
        "device": device, "device_name": device_name, "benchmark": cfg.name, "rule": rule_name, "K": K,
        "runner_K": runner_k, "n_params": spec.n_params, "bytes_per_update": parts["total"],
        **{f"bytes_{k}": v for k, v in parts.items() if k not in ("total", "distinct")},
        "working_set_MB": round(working_set / 1e6, 2), "updates_per_s": round(rate, 1),
        "achieved_GBps": round(achieved / 1e9, 2), "dram_GBps": round(bw["dram"] / 1e9, 2),
        "cache_GBps": round(bw["cache"] / 1e9, 2), "limit": level,
        "fraction_of_dram": round(achieved / bw["dram"], 3),
        "fraction_of_limit": round(achieved / bw[level], 3),
    }


def write_rows(rows: list[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def recount(path: str, device_name: str | None = None) -> list[dict]:
    """The rows of a roofline CSV with their byte columns counted again by the current ``update_bytes``; the
    measurements (rate, bandwidths, K, the runner's K) are kept as they are."""
    with open(path) as f:
        old = list(csv.DictReader(f))
    rows = []
    for r in old:
        bw = {"dram": float(r["dram_GBps"]) * 1e9, "cache": float(r["cache_GBps"]) * 1e9}
        rows.append(roofline_row(r["device"], r["benchmark"].lower(), r["rule"], int(r["K"]), int(r["runner_K"]),
                                 float(r["updates_per_s"]), bw, device_name or r.get("device_name") or ""))
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
    args = ap.parse_args()
    if args.plot_only or args.recount:
        if args.recount:
            write_rows(recount(args.csv, args.device_name), args.csv)
            print(f"wrote {args.csv}")
        with open(args.csv) as f:
            plot(list(csv.DictReader(f)), args.png)
        return
    torch.set_num_threads(1)
    from experiments.malloc import keep_freed_memory

    keep_freed_memory()
    bw = machine_bandwidth(args.device)
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"measured bandwidth, one thread: DRAM {bw['dram'] / 1e9:.1f} GB/s, cache {bw['cache'] / 1e9:.1f} GB/s", flush=True)
    rows = []
    for name, rule_name in itertools.product(args.benchmarks, args.rules):
        spec, cfg = bench_spec(name)
        rule = get_rule(rule_name)
        fused = rule.scalar_rate is not None and not rule.extras
        runner_k = auto_chunk_size(spec, fused, torch.float32, torch.device(args.device), 10_000, rule=rule)
        ks = sorted(set(args.ks) | ({runner_k} if args.runner_k else set()))
        for K in ks:
            rate = ensemble_rate(spec, rule_name, K, args.seconds, device=args.device)
            r = roofline_row(args.device, name, rule_name, K, runner_k, rate, bw, device_name)
            rows.append(r)
            print(f"{cfg.name:3s} {rule_name:8s} K={K:<4d}{'*' if K == runner_k else ' '} {rate:9,.0f} updates/s "
                  f"{r['achieved_GBps']:6.1f} GB/s = {r['fraction_of_dram']:5.2f} of DRAM, {r['fraction_of_limit']:5.2f} of "
                  f"{r['limit']} (working set {r['working_set_MB']} MB)", flush=True)
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


if __name__ == "__main__":
    main()
