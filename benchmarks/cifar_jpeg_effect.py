"""What the approximate CIFAR copy's JPEG rows do to the CR network and C1 itself (issue 33, section 4).

    python benchmarks/cifar_jpeg_effect.py [--seeds 3] [--runs cr:vsgd_l cr:sgd cr:adagrad c1:sgd] [--out CSV]

The copy (../shared/data/cifar-10-approx/README.md) has exact pixels in rows 0-3999 of data_batch_1 and
JPEG-decoded pixels everywhere else; the paper trained and tested on exact pixels. This holds the images
fixed and swaps only the pixels: rows 0-2999 are the training set and rows 3000-3999 the test set, each
either exact or re-encoded through JPEG at the quality whose mean absolute difference matches the copy's
(about 5.8 on 0-255; `cifar_approx_jpeg.calibrate`). Every (benchmark, rule) trains the paper's network
(conf/benchmark) at the paper's Table 1 setting (vSGD: untuned) for 6 epochs, seeds 0..n-1, on both training
sets, and evaluates each on both test sets: a 2 x 2 of (train pixels, test pixels). Same seed = same
initialisation and sample order in every cell. Exact/exact is the paper's situation; the copy's Table 2/3
cells sit near JPEG/JPEG (60 % of its training rows and all its test rows are JPEG). The training and test sets
are 3000 and 1000 images, not the paper's 10000 and 10000, so the absolute numbers are not Table 2/3's;
the differences between the four cells are what this measures. Writes one CSV row per member and cell.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from cifar_approx_jpeg import EXACT_ROWS, calibrate, reencode  # sibling script (run by path)

from experiments.data import Dataset, find_cifar_folder, preprocess, read_cifar_batch, resolve_root
from experiments.run import group_config, hyperparams_of, spec_of, table1_setting, trainer_for
from experiments.trainer import Member

N_TRAIN = 3000  # rows 0..2999 train, 3000..3999 test: all exact in the copy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--runs", nargs="+", default=["cr:sgd", "cr:vsgd_l", "cr:adagrad", "c1:sgd"])
    ap.add_argument("--epochs", type=float, default=None, help="default: the benchmark's (6)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".csv"))
    ap.add_argument("--no-compile", dest="compile", action="store_false",
                    help="eager steps (default: torch.compile, as the runner's compile=auto)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    folder = find_cifar_folder(resolve_root(None))
    x, y = read_cifar_batch(folder / "data_batch_1")
    exact = x[:EXACT_ROWS]
    quality, _ = calibrate(exact[:500])
    pixels = {"exact": exact, "JPEG": reencode(exact, quality)}
    mad = float(np.abs(pixels["JPEG"].astype(np.int16) - exact).mean())
    print(f"JPEG quality {quality}: mean absolute difference {mad:.2f} on the {EXACT_ROWS} exact rows")
    labels = torch.from_numpy(y[:EXACT_ROWS].astype(np.int64))
    # resumes: (benchmark, rule) pairs already in the CSV are kept, not run again
    rows = pd.read_csv(args.out).to_dict("records") if args.out.is_file() else []
    done = {(r["benchmark"], r["rule"]) for r in rows}
    for run in args.runs:
        bname, rule = run.split(":")
        bench = group_config("benchmark", bname)
        if (bench.name, rule) in done:
            print(f"{bench.name} {rule}: already in {args.out}, kept")
            continue
        spec = spec_of(bench)
        hp = table1_setting(bench.name, rule) or hyperparams_of(group_config("optimizer", rule))
        trainer = trainer_for(rule, spec, compile=args.compile)
        members = [Member(s, trainer.check_hp(hp)) for s in range(args.seeds)]
        for train_px in ("exact", "JPEG"):
            for test_px in ("exact", "JPEG"):
                # the training mean of the training pixels, subtracted from both (experiments.data.preprocess)
                xtr, xte = preprocess(pixels[train_px][:N_TRAIN], pixels[test_px][N_TRAIN:])
                d = Dataset(f"{bname}-{train_px}-{test_px}", xtr, labels[:N_TRAIN], xte, labels[N_TRAIN:],
                            f"{train_px}/{test_px}", False, ())
                t0 = time.perf_counter()
                out = trainer.train(members, d, epochs=float(args.epochs or bench.epochs), device="cpu",
                                    dtype=torch.float32)
                for r in out:
                    rows.append({"benchmark": bench.name, "rule": rule, "seed": r.member.seed, "train_pixels": train_px,
                                 "test_pixels": test_px, "train_error": r.train_error, "test_error": r.test_error,
                                 "diverged": r.diverged, "jpeg_quality": quality, "jpeg_mad": round(mad, 3)})
                print(f"{bench.name} {rule:8s} train {train_px:5s} test {test_px:5s}: train "
                      f"{np.mean([r.train_error for r in out]):8.3f} test {np.mean([r.test_error for r in out]):8.3f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)  # after each run: an interruption keeps what finished
    print(summary(pd.DataFrame(rows)))
    print(f"wrote {args.out}")


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (benchmark, rule, train pixels, test pixels): mean final errors over seeds, and the ratio of each
    cell's test error to the exact/exact cell's (the paper's situation) with the same rule."""
    g = df.groupby(["benchmark", "rule", "train_pixels", "test_pixels"], sort=False)[["train_error", "test_error"]]
    s = g.mean().join(g.std().add_suffix("_std")).reset_index()
    ref = s[(s.train_pixels == "exact") & (s.test_pixels == "exact")].set_index(["benchmark", "rule"])
    s["test_over_exact"] = [r.test_error / ref.loc[(r.benchmark, r.rule), "test_error"] for r in s.itertuples()]
    s["train_over_exact"] = [r.train_error / ref.loc[(r.benchmark, r.rule), "train_error"] for r in s.itertuples()]
    return s


if __name__ == "__main__":
    main()
