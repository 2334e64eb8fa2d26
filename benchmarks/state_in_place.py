"""The compiled step's state written in place (``experiments.trainer.IN_PLACE``) against fresh state tensors.

    python benchmarks/state_in_place.py 1.0 m2:vsgd_l:1 c1:smd:1 m1:adagrad:4    # seconds per window, bench:rule:K

Both forms are stepped in one process (fake data, one thread), alternating windows, best of 2; prints
member-updates/s and the ratio.
"""

import sys

import torch

import experiments.trainer as tr
from benchmarks.throughput import bench_spec, ensemble_stepper, timed
from experiments.malloc import keep_freed_memory


def main() -> None:
    torch.set_num_threads(1)
    keep_freed_memory()
    sec, cases = float(sys.argv[1]), [c.split(":") for c in sys.argv[2:]]
    steppers = {}
    for b, r, K in cases:
        spec, _ = bench_spec(b)
        for flag in (False, True):
            tr.IN_PLACE = flag  # read when the step is traced: one graph per flag
            one = ensemble_stepper(spec, r, int(K))
            for _ in range(60):  # compilation and the slow start
                one()
            steppers[(b, r, int(K), flag)] = one
    res: dict = {}
    for _ in range(2):
        for key, one in steppers.items():
            tr.IN_PLACE = key[3]
            res[key] = max(res.get(key, 0), timed(one, sec) * key[2])
    for b, r, K in cases:
        old, new = res[(b, r, int(K), False)], res[(b, r, int(K), True)]
        print(f"{b} {r:8s} K={int(K):<3d} fresh state {old:8,.0f}  in place {new:8,.0f}  ratio {new / old:.2f}", flush=True)


if __name__ == "__main__":
    main()
