"""vSGD-fd: minibatch vSGD with finite-difference curvature (paper 2, Algorithm 1).

Per dimension i, with n samples per minibatch, minibatch gradient g = (1/n) sum_j g_j (eq. 2):

    delta_i  = g_bar_i                                              # eq. 6 (paper 2): FD step = g_bar
    h_j      = |(g_j(theta) - g_j(theta + delta)) / delta|          # eq. 6: per-sample FD curvature
    outlier  : |g_i - g_bar_i| > 2 sd(g) or |h_i - h_bar_i| > 2 sd(h)  ->  tau_i += 1    # Sec. 5.3
    g_bar    <- (1 - 1/tau) g_bar + 1/tau g                          # Alg. 1
    v_bar    <- (1 - 1/tau) v_bar + 1/tau (1/n) sum_j g_j^2          # Alg. 1
    h_bar    <- (1 - 1/tau) h_bar + 1/tau (1/n) sum_j h_j            # Alg. 1 (h_bar^fd)
    v_fd_bar <- (1 - 1/tau) v_fd_bar + 1/tau (1/n) sum_j h_j^2       # Alg. 1 (v_bar^fd)
    eta_i    = (h_bar / v_fd_bar) n g_bar^2 / (v_bar + (n - 1) g_bar^2)   # eq. 3 with 1/h = h_bar/v_fd_bar (Sec. 5.2)
    tau      <- (1 - g_bar^2 / v_bar) tau + 1                        # Alg. 1 (paper 1 Sec. 4.2)
    theta    <- theta - eta * g

State keys: ``g_bar``, ``v_bar``, ``h_bar`` (the FD curvature average h_bar^fd), ``v_fd_bar``, ``tau``,
``p_nz`` (average fraction of non-zero sample gradients, for the sparse rates), ``eta`` (the rates of
the last step, for logging), ``step`` (updates made, [K]) and ``seen`` (samples seen, [K]).

Hyper-parameters (none needs tuning; they pin down what the paper leaves open):

* ``n0`` = 10: bootstrap. The first ceil(n0 / n) minibatches only build arithmetic means of all four
  statistics and make no update (Sec. 5.4: "bootstrapped on a few samples (10) before any updates").
* ``slow_start`` C = 2: after the bootstrap v_bar is multiplied by C (paper 1 Sec. 4.4 overestimates
  v by C; C = 2 as in the first author's code, since paper 1's d/10 is < 1 for small d), and with
  ``slow_start_curvature`` = 1 (default) h_bar by C and v_fd_bar by C^2, which divides 1/h by C (as in
  the co-author's Torch vsgdfd; paper 2 is silent). For n > 1 eq. 3's rate is dominated by
  (n-1) g_bar^2 and hardly feels C on v_bar alone; on the 1-D suite this halves the runs that end a
  checkpoint worse than they started (docs/vsgd_fd.md).
* ``tau0`` = 0: the memory at the first update is k + 1, k = ceil(n0 / n) the number of bootstrap
  minibatches: the first update's EMA step (weight 1 / (k + 1)) continues the bootstrap's arithmetic mean
  over k minibatches exactly (paper silent; the first author's code uses 2; any value > 0 is used as
  given). Until fd2 this was k, which at n >= n0 (k = 1, e.g. n = 10) gave the first update the weight
  1 / tau = 1: the bootstrap statistics, slow start included, were thrown away before they were used.
* ``fd_sign`` = +1 and ``fd_step`` = 0: the FD pair is (theta, theta + g_bar), as eq. 6 writes it.
  Options: -1 evaluates at theta - g_bar (where the update goes); ``fd_step`` = 1 uses the last
  update's length eta g_bar instead of g_bar (Sec. 5.1's "typical update distance").
* ``outlier_sigma`` = 2: the outlier threshold in standard deviations (Sec. 5.3); 0 turns it off.
  The tested quantities are minibatch means, so sd = sqrt((v_bar - g_bar^2) / n), the standard
  deviation of a mean of n samples (as in the first author's code; Alg. 1 writes the n = 1 form).
* ``eps`` = 1e-5 (Sec. 5.4), used in four places where a division can be 0/0, and in the outlier test:
  (a) the FD step: delta = g_bar pushed eps away from 0 (|delta| >= eps; divides in eq. 6);
  (b) 1/h = (h_bar + eps) / (v_fd_bar + eps) (all FD curvatures 0, e.g. a linear region: rate factor 1);
  (c) n g_bar^2 / (v_bar + (n-1) g_bar^2 + eps) (all gradients 0); (d) g_bar^2 / (v_bar + eps) in tau;
  (e) the outlier test is |x - x_bar| > 2 sd + eps, so that a zero variance (a constant curvature, as on
  a quadratic) does not turn rounding noise into outliers.
* ``sparse``: 0 = eq. 3 (default); 1 = eq. 4 with the non-zero counts m = n - z of the current
  minibatch (extras ``nonzero_count``); 2 = eq. 4 with the long-term average m = p_nz n (Fig. 2's
  alternative; m clamped to >= 1, where the paper's formula is undefined).

Eq. 4 in terms of statistics over all samples. Eq. 4 is written with the statistics of the non-zero
sample gradients (g_nz, v_nz, h_nz); with p the non-zero fraction, g_bar = p g_nz, v_bar = p v_nz and
the FD curvature average (zeros included) h = p h_nz, so eq. 4 becomes

    eta_i = (n / h) p g_bar^2 / (p v_bar + (m - 1) g_bar^2)          # eq. 4 (paper 2), m = n - z_i

which is eq. 3 when p = 1 and m = n (nothing sparse) and the n = 1 rule when n = m = 1.

Optional extras beyond ``Rule.extras`` (a caller that can compute them passes them; otherwise the
n = 1 forms are used, which are exact for n = 1):

* ``fd_per_sample``: callable ``shifts -> (mean_j |g_j - g_j(theta + shifts)|, mean_j (g_j - g_j(theta + shifts))^2)``,
  two lists like params. Without it, h is computed from the minibatch-mean gradients via ``grad_at``
  (exact for n = 1, and |mean| <= mean |.| for n > 1).
* ``reweighted``: ``(direction, n_eff)`` from :func:`orthogonal_reweighting` (eq. 5): the update
  is -eta(n_eff) * direction, with eq. 3's n replaced by the effective minibatch size n_eff in [1, n].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vsgd.core import HyperParam, Rule, per_member, register

HYPERPARAMS = {
    "n0": HyperParam(10.0, low=1.0, doc="bootstrap samples before the first update (Sec. 5.4)"),
    "slow_start": HyperParam(2.0, low=1.0, doc="C: v_bar is multiplied by C after the bootstrap (paper 1 Sec. 4.4)"),
    "slow_start_curvature": HyperParam(1.0, low=0.0, high=1.0,
                                       doc="1: the slow start also scales h_bar by C and v_fd_bar by C^2 (1/h / C)"),
    "tau0": HyperParam(0.0, low=0.0, doc="memory size tau at the first update; 0: bootstrap minibatches + 1 (continues their mean)"),
    "fd_sign": HyperParam(1.0, low=-1.0, high=1.0, choices=(-1.0, 1.0),
                          doc="+1: shift theta + g_bar (Alg. 1); -1: theta - g_bar (the update's way)"),
    "outlier_sigma": HyperParam(2.0, low=0.0, doc="outlier threshold in standard deviations (Sec. 5.3); 0 = off"),
    "eps": HyperParam(1e-5, low=0.0, low_inclusive=False, doc="guards the four 0/0 divisions (Sec. 5.4)"),
    "fd_step": HyperParam(0.0, low=0.0, high=1.0, choices=(0.0, 1.0),
                          doc="0: delta = g_bar (Alg. 1); 1: delta = eta g_bar, the last update's size (Sec. 5.1)"),
    "sparse": HyperParam(0.0, low=0.0, high=2.0,
                         doc="0 = eq. 3; 1 = eq. 4 per-minibatch non-zero counts; 2 = eq. 4 long-term average"),
}

SPARSE_MODES = {"none": 0, "minibatch": 1, "average": 2}


def init(params, hp):
    K, like = params[0].shape[0], params[0]
    zeros = lambda: [torch.zeros_like(p) for p in params]
    return {
        "g_bar": zeros(), "v_bar": zeros(), "h_bar": zeros(), "v_fd_bar": zeros(),
        "tau": [torch.ones_like(p) for p in params], "p_nz": [torch.ones_like(p) for p in params],
        "eta": zeros(), "step": like.new_zeros(K), "seen": like.new_zeros(K),
        # Python ints (all members see the same minibatches): once every member is past its bootstrap the step
        # skips the bootstrap's arithmetic (its values were discarded by torch.where anyway)
        "seen_all": 0, "n0_max": math.ceil(float(hp["n0"].max())),
    }


def _fd_step(g_bar: Tensor, eps: Tensor) -> Tensor:
    """delta = g_bar (eq. 6), pushed eps away from 0 so that |delta| >= eps (eps use (a))."""
    return torch.where(g_bar >= 0, g_bar + eps, g_bar - eps)


def minibatch_ratio(g2, v_bar, n, eps, *, inv_h=1.0, p_nz=1.0, m=None):
    """inv_h x the minibatch factor of paper 2: n p g^2 / (p v + (m - 1) g^2 + eps) (eq. 4), which is eq. 3's
    n g^2 / (v + (n - 1) g^2) = g^2 / (v / n + (n - 1) / n g^2) at p = 1, m = n, with g^2 = g_bar^2 and v = v_bar the
    mean of the *per-sample* squared gradients: the denominator is E[(minibatch mean gradient)^2]. Shared by vSGD-fd
    and VSGD's minibatch rates (one formula); the order of operations is vSGD-fd's (bit-identical)."""
    m = n if m is None else m
    return inv_h * n * p_nz * g2 / (p_nz * v_bar + (m - 1) * g2 + eps)


def _rate(g_bar, v_bar, h_bar, v_fd_bar, p_nz, n, m, eps):
    inv_h = (h_bar + eps) / (v_fd_bar + eps)  # Sec. 5.2: 1/h = h_bar^fd / v_bar^fd   (eps use (b))
    g2 = g_bar * g_bar
    return minibatch_ratio(g2, v_bar, n, eps, inv_h=inv_h, p_nz=p_nz, m=m)  # eq. 4 (eq. 3 at p = 1, m = n)  (eps (c))


def update(grads, state, params, hp, extras):
    n = extras.get("batch_size", 1)
    n_f = float(n)
    sq = extras.get("sq_grad_mean")
    if sq is None:
        if n != 1:
            raise ValueError("vsgd_fd with batch_size > 1 needs extras['sq_grad_mean'] (mean of squared per-sample gradients)")
        sq = [g * g for g in grads]
    nz = extras.get("nonzero_count")
    if nz is None:
        nz = [(g != 0).to(g.dtype) * n_f for g in grads] if n == 1 else [torch.full_like(g, n_f) for g in grads]
    reweighted = extras.get("reweighted")
    direction, n_rate = (grads, None) if reweighted is None else reweighted

    seen, step = state["seen"], state["step"]
    # some member may still bootstrap (always assumed for a state saved before "seen_all" existed)
    boot_any = "seen_all" not in state or state["seen_all"] < state["n0_max"]
    first = seen == 0  # [K]: members whose very first minibatch this is
    in_boot = seen < hp["n0"]  # [K]: members still bootstrapping (no update)

    # eq. 6 (paper 2): delta = g_bar; on the very first minibatch the current gradient stands in for g_bar
    deltas = []
    for g, gb, eta in zip(grads, state["g_bar"], state["eta"]):
        d = torch.where(per_member(first, g), g, gb)
        use_eta = per_member((hp["fd_step"] > 0) & (state["step"] > 0), g)
        d = torch.where(use_eta, eta * d, d) * per_member(torch.where(hp["fd_sign"] < 0, -1.0, 1.0).to(g.dtype), g)
        deltas.append(_fd_step(d, per_member(hp["eps"], g)))
    fd = extras.get("fd_per_sample")
    if fd is not None:
        abs_diff, sq_diff = fd(deltas)
        h_fd = [a / d.abs() for a, d in zip(abs_diff, deltas)]  # eq. 6, averaged over the minibatch
        h2_fd = [s / (d * d) for s, d in zip(sq_diff, deltas)]
    else:
        shifted = extras["grad_at"](deltas)
        h_fd = [((g - gs) / d).abs() for g, gs, d in zip(grads, shifted, deltas)]  # eq. 6
        h2_fd = [h * h for h in h_fd]

    out = {k: [] for k in ("g_bar", "v_bar", "h_bar", "v_fd_bar", "tau", "p_nz", "eta")}
    updates = []
    for i, g in enumerate(grads):
        def K1(x, g=g):  # a [K] tensor, shaped to broadcast against g
            return per_member(x, g)

        boot, eps, sigma, sparse = K1(in_boot), K1(hp["eps"]), K1(hp["outlier_sigma"]), K1(hp["sparse"])
        gb, vb, hb, vfb = state["g_bar"][i], state["v_bar"][i], state["h_bar"][i], state["v_fd_bar"][i]
        tau, p_nz = state["tau"][i], state["p_nz"][i]
        frac_nz = nz[i] / n_f

        # bootstrap (Sec. 5.4): arithmetic means over the first n0 samples, weight n / (seen + n)
        if boot_any:
            boot_stats, boot_tau = _bootstrap(gb, vb, hb, vfb, p_nz, tau, g, sq[i], h_fd[i], h2_fd[i], frac_nz, seen,
                                              in_boot, hp, n_f, K1)

        # Sec. 5.3: outliers (2 sd of a minibatch mean) make the memory one sample longer
        sd_g = ((vb - gb * gb).clamp_min(0) / n_f).sqrt()
        sd_h = ((vfb - hb * hb).clamp_min(0) / n_f).sqrt()
        # (+ eps: with zero variance, e.g. a constant curvature, rounding noise alone must not count as an outlier)
        outlier = ((g - gb).abs() > sigma * sd_g + eps) | ((h_fd[i] - hb).abs() > sigma * sd_h + eps)
        tau_o = tau + (outlier & (sigma > 0)).to(tau.dtype)
        f = 1.0 / tau_o
        main_stats = [(1 - f) * x + f * new for x, new in
                      ((gb, g), (vb, sq[i]), (hb, h_fd[i]), (vfb, h2_fd[i]), (p_nz, frac_nz))]  # Alg. 1 EMAs
        gb2, vb2, hb2, vfb2, p2 = main_stats
        main_tau = (1 - gb2 * gb2 / (vb2 + eps)) * tau_o + 1  # Alg. 1: tau <- (1 - g_bar^2 / v_bar) tau + 1  (eps (d))

        if boot_any:
            new = [torch.where(boot, b, m_) for b, m_ in zip(boot_stats, main_stats)]
            tau2 = torch.where(boot, boot_tau, main_tau)
        else:
            new, tau2 = main_stats, main_tau
        gb2, vb2, hb2, vfb2, p2 = new

        # rates (eq. 3 / eq. 4) from the updated statistics
        n_eq = n_f if n_rate is None else K1(n_rate)
        m_cur = nz[i].clamp_min(1.0)  # current minibatch's non-zero count (m = 0: no update anyway)
        m_avg = (p2 * n_f).clamp_min(1.0)  # long-term average alternative (Fig. 2), clamped to >= 1
        m = torch.where(sparse == 1, m_cur, torch.where(sparse == 2, m_avg, torch.as_tensor(n_eq, dtype=g.dtype)))
        p_used = torch.where(sparse > 0, p2, torch.ones_like(p2))
        eta = _rate(gb2, vb2, hb2, vfb2, p_used, n_eq, m, eps)

        updates.append(torch.where(boot, torch.zeros_like(g), -eta * direction[i]) if boot_any else -eta * direction[i])
        for k, v in zip(("g_bar", "v_bar", "h_bar", "v_fd_bar", "tau", "p_nz", "eta"), (gb2, vb2, hb2, vfb2, tau2, p2, eta)):
            out[k].append(v)

    out["seen"] = seen + n_f
    out["step"] = step + (~in_boot).to(step.dtype)
    if "seen_all" in state:
        out["seen_all"], out["n0_max"] = state["seen_all"] + n, state["n0_max"]
    return updates, out


def _bootstrap(gb, vb, hb, vfb, p_nz, tau, g, sq, h_fd, h2_fd, frac_nz, seen, in_boot, hp, n_f, K1):
    """The statistics and tau of members still in the bootstrap (Sec. 5.4), and of those completing it now."""
    w = K1(n_f / (seen + n_f))
    boot_stats = [x + w * (new - x) for x, new in ((gb, g), (vb, sq), (hb, h_fd), (vfb, h2_fd), (p_nz, frac_nz))]
    done_now = K1((seen + n_f >= hp["n0"]) & in_boot)  # slow start once the bootstrap is complete
    C = K1(hp["slow_start"])
    boot_stats[1] = torch.where(done_now, boot_stats[1] * C, boot_stats[1])
    Ch = torch.where(K1(hp["slow_start_curvature"]) > 0, C, torch.ones_like(C))  # 1/h = h_bar / v_fd_bar -> / C
    boot_stats[2] = torch.where(done_now, boot_stats[2] * Ch, boot_stats[2])
    boot_stats[3] = torch.where(done_now, boot_stats[3] * Ch * Ch, boot_stats[3])
    # Sec. 5.4 (tau at the first update: paper silent): k bootstrap minibatches hold an arithmetic mean over k;
    # weight 1 / (k + 1) on the next minibatch continues that mean (tau = k would discard it when k = 1)
    n_boot = torch.ceil(hp["n0"] / n_f)
    tau_start = torch.where(hp["tau0"] > 0, hp["tau0"], n_boot + 1)
    boot_tau = torch.where(done_now, K1(tau_start).expand_as(tau), tau)
    return boot_stats, boot_tau


def rates(state, hp, params):
    """The rates of the last step (0 before the first update)."""
    return [e for e in state["eta"]]


def orthogonal_reweighting(per_sample: list[Tensor]) -> tuple[list[Tensor], Tensor]:
    """Eq. 5 (paper 2): reweight sample gradients by one over their summed |cosine| with the others.

    ``per_sample``: list of tensors ``[K, n, *shape]``. Returns ``(direction, n_eff)``:
    direction_k = sum_j w_kj g_kj (list ``[K, *shape]``), w_kj = 1 / sum_l |cos(g_kj, g_kl)| (eq. 5),
    and n_eff_k = n / sum_j w_kj (n when all gradients are aligned, 1 when all are orthogonal).
    Cost O(n^2 d). All-zero sample gradients get weight 0.
    """
    K, n = per_sample[0].shape[:2]
    flat = torch.cat([g.reshape(K, n, -1) for g in per_sample], dim=2)  # [K, n, d]
    norms = flat.norm(dim=2)  # [K, n]
    gram = torch.bmm(flat, flat.transpose(1, 2)).abs()  # [K, n, n]
    denom = norms.unsqueeze(2) * norms.unsqueeze(1)
    cos = torch.where(denom > 0, gram / denom.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(gram))
    interf = cos.sum(dim=2)  # [K, n]: 1 (itself) + interference with the others
    w = torch.where(interf > 0, 1.0 / interf.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(interf))
    direction = [(w.reshape(K, n, *([1] * (g.dim() - 2))) * g).sum(dim=1) for g in per_sample]  # eq. 5
    wsum = w.sum(dim=1)
    n_eff = torch.where(wsum > 0, n / wsum.clamp_min(torch.finfo(flat.dtype).tiny), torch.full_like(wsum, float(n)))
    return direction, n_eff


RULE = register(
    Rule(
        name="vsgd_fd",
        init=init,
        update=update,
        hyperparams=HYPERPARAMS,
        extras=("grad_at", "sq_grad_mean", "nonzero_count", "batch_size"),
        rates=rates,
        doc=__doc__,
    )
)
