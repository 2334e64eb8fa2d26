"""The tanh-MLP family of paper 1 Sec. 7.2, for K ensemble members at once, written by hand.

    h_0 = x,   h_{k+1} = tanh(W_k^T h_k + b_k)   (k < H),   y = W_H^T h_H + b_H
    cross-entropy: loss = -log softmax(y)[c];    mse: loss = 1/2 ||x - y||^2
    plus the L2 penalty lambda/2 ||W||^2 on the weights (biases are not penalised: the paper
    says "a L2 regularization term on the weights"; ``l2_biases=True`` includes them).

Parameters are the list ``[W_0, b_0, W_1, b_1, ...]`` with ``W_k: [K, fan_in, fan_out]`` and
``b_k: [K, fan_out]``; every weight matrix and every bias vector is one block for vSGD-b.

One training step sees one sample per member (``x: [K, D]``); forward, backward and the bbprop
curvature (LeCun et al. 1998, "Efficient BackProp" Sec. 9.1; paper 1 Sec. 4.3) are a handful of
batched matmuls. The tests check forward/backward against autograd in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

LOSSES = ("cross_entropy", "mse")
EVAL_BATCH = 2000  # samples per evaluation matmul


NARROW = 32  # layers with fewer outputs than this use the reduction form of the vector-matrix product


def _vec_mat(h: Tensor, W: Tensor) -> Tensor:
    """Per-member ``h_k^T W_k``: ``[K, D] x [K, D, H] -> [K, H]``.

    BLAS's batched vector-matrix product gives bits that depend on how many members share the batch
    when H is small (the classifiers' 10 outputs), which would make a member's trajectory depend on
    its neighbours. For narrow layers the product is written as a broadcast multiply and a sum over D,
    whose order does not depend on K (a test checks both forms across ensemble compositions).
    """
    if W.shape[2] < NARROW:
        return (h.unsqueeze(2) * W).sum(dim=1)
    return torch.bmm(h.unsqueeze(1), W).squeeze(1)


@dataclass(frozen=True)
class MLPSpec:
    layers: tuple[int, ...]  # e.g. (784, 120, 10)
    loss: str  # "cross_entropy" or "mse"
    l2: float = 1e-4  # lambda in lambda/2 ||w||^2
    l2_biases: bool = False

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"Unknown loss {self.loss!r}; expected one of {LOSSES}.")
        if len(self.layers) < 2 or any(int(n) < 1 for n in self.layers):
            raise ValueError(f"layers must list at least an input and an output size, all >= 1; got {self.layers}.")

    @property
    def n_layers(self) -> int:
        return len(self.layers) - 1

    @property
    def n_params(self) -> int:
        return sum(a * b + b for a, b in zip(self.layers[:-1], self.layers[1:]))

    def shapes(self) -> list[tuple[int, ...]]:
        out = []
        for a, b in zip(self.layers[:-1], self.layers[1:]):
            out += [(a, b), (b,)]
        return out


def glorot_init(spec: MLPSpec, seeds: Sequence[int], *, dtype=torch.float32, device="cpu") -> list[Tensor]:
    """Glorot & Bengio (2010) uniform init, U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), biases 0.

    Member k draws from its own generator seeded with ``seeds[k]``, so a member's initial weights do
    not depend on which other members share its ensemble.
    """
    params = [torch.empty(len(seeds), *s, dtype=dtype, device=device) for s in spec.shapes()]
    for k, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(int(seed))
        for i, (fan_in, fan_out) in enumerate(zip(spec.layers[:-1], spec.layers[1:])):
            a = math.sqrt(6.0 / (fan_in + fan_out))
            w = (torch.rand(fan_in, fan_out, generator=g, dtype=torch.float64) * 2 - 1) * a
            params[2 * i][k] = w.to(dtype)
            params[2 * i + 1][k] = 0.0
    return params


class EnsembleMLP:
    """Forward, backward and bbprop of K tanh-MLPs on one sample each (or a batch each)."""

    def __init__(self, spec: MLPSpec):
        self.spec = spec

    # -- one sample per member ----------------------------------------------------------------
    def forward(self, params: Sequence[Tensor], x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x: [K, D] -> (output [K, out], hidden activations [h_0 = x, h_1, ..., h_H])."""
        hs = [x]
        h = x
        n = self.spec.n_layers
        for k in range(n):
            a = _vec_mat(h, params[2 * k]).add_(params[2 * k + 1])
            if k < n - 1:
                h = torch.tanh(a)
                hs.append(h)
            else:
                return a, hs
        raise AssertionError("unreachable")

    def output_delta(self, out: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(per-member data loss [K], dloss/dout [K, out], Gauss-Newton diagonal d2loss/dout2 [K, out])."""
        if self.spec.loss == "cross_entropy":
            logp = torch.log_softmax(out, dim=1)
            loss = -logp.gather(1, target.unsqueeze(1)).squeeze(1)
            p = logp.exp()
            delta = p.clone()
            delta.scatter_add_(1, target.unsqueeze(1), -torch.ones_like(loss).unsqueeze(1))
            return loss, delta, p * (1 - p)  # diagonal of diag(p) - p p^T
        delta = out - target
        return 0.5 * (delta * delta).sum(dim=1), delta, torch.ones_like(out)

    def loss_and_grads(
        self, params: Sequence[Tensor], x: Tensor, target: Tensor, *, curvature: bool = False
    ) -> tuple[Tensor, list[Tensor], list[Tensor] | None]:
        """Data loss [K], gradients of loss + L2 term (list like params), bbprop curvature or None.

        ``target`` is the class index [K] for cross-entropy and the target vector [K, out] for mse.
        """
        spec = self.spec
        out, hs = self.forward(params, x)
        loss, delta, h_out = self.output_delta(out, target)
        n = spec.n_layers
        grads: list[Tensor] = [None] * (2 * n)  # type: ignore[list-item]
        curv: list[Tensor] | None = [None] * (2 * n) if curvature else None  # type: ignore[list-item]
        hcur = h_out
        for k in reversed(range(n)):
            W, h = params[2 * k], hs[k]
            # dL/dW = h delta^T + lambda W
            grads[2 * k] = (h.unsqueeze(2) * delta.unsqueeze(1)).add_(W, alpha=spec.l2)
            grads[2 * k + 1] = delta + spec.l2 * params[2 * k + 1] if spec.l2_biases else delta
            if curv is not None:
                # bbprop: d2L/dW_ij^2 ~ h_i^2 * d2L/da_j^2, plus the L2 term's curvature lambda
                curv[2 * k] = torch.bmm((h * h).unsqueeze(2), hcur.unsqueeze(1)).add_(spec.l2)
                curv[2 * k + 1] = hcur + spec.l2 if spec.l2_biases else hcur
            if k > 0:
                dh = 1 - h * h  # tanh'(a) = 1 - tanh(a)^2
                delta = torch.bmm(delta.unsqueeze(1), W.transpose(1, 2)).squeeze(1) * dh
                if curv is not None:
                    # Gauss-Newton: d2L/dh_i^2 ~ sum_j W_ij^2 d2L/da_j^2; d2L/da^2 ~ f'(a)^2 d2L/dh^2
                    hcur = torch.bmm(hcur.unsqueeze(1), (W * W).transpose(1, 2)).squeeze(1) * (dh * dh)
        return loss, grads, curv

    def hvp(self, params: Sequence[Tensor], x: Tensor, target: Tensor, vectors: Sequence[Tensor]) -> list[Tensor]:
        """Exact Hessian-vector product of (data loss + L2) per member, by forward-over-reverse AD.

        Uses ``torch.func.jvp`` of :meth:`loss_and_grads` (Pearlmutter's R-operator, computed by
        the autodiff system rather than written by hand a second time).
        """
        return self.grads_and_hvp(params, x, target, vectors)[2]

    def grads_and_hvp(self, params: Sequence[Tensor], x: Tensor, target: Tensor,
                      vectors: Sequence[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """(data loss [K], gradients, Hessian-vector products) from one forward-over-reverse pass: the jvp's
        primal outputs are :meth:`loss_and_grads`' loss and gradients, so a rule that needs both (SMD) pays for
        one pass of the gradient, not two (``experiments.trainer``, ``Rule.hvp_vectors``)."""
        def fn(*ps):
            loss, grads, _ = self.loss_and_grads(list(ps), x, target)
            return loss, tuple(grads)

        (loss, grads), (_, hv) = torch.func.jvp(fn, tuple(params), tuple(vectors))
        return loss, list(grads), list(hv)

    # -- evaluation on a whole set ------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, params: Sequence[Tensor], x: Tensor, labels: Tensor, *, batch: int | None = None) -> tuple[Tensor, Tensor]:
        """(error [K], mean data loss [K]) over the set: error in percent for cross-entropy, the
        mean reconstruction error 1/2 ||x - y||^2 for mse (the paper's CR units)."""
        K = params[0].shape[0]
        N = x.shape[0]
        if batch is None:
            batch = EVAL_BATCH  # fixed, so a member's sums do not depend on which members share the ensemble
        wrong = torch.zeros(K, dtype=torch.float64, device=x.device)
        total = torch.zeros(K, dtype=torch.float64, device=x.device)
        n = self.spec.n_layers
        for s in range(0, N, batch):
            h = x[s : s + batch].unsqueeze(0).expand(K, -1, -1)  # [K, B, D]
            for k in range(n):
                a = torch.baddbmm(params[2 * k + 1].unsqueeze(1), h, params[2 * k])
                h = torch.tanh(a) if k < n - 1 else a
            if self.spec.loss == "cross_entropy":
                y = labels[s : s + batch]
                logp = torch.log_softmax(h, dim=2)
                total += -logp.gather(2, y.view(1, -1, 1).expand(K, -1, 1)).squeeze(2).sum(dim=1).double()
                wrong += (h.argmax(dim=2) != y.unsqueeze(0)).sum(dim=1).double()
            else:
                d = h - x[s : s + batch].unsqueeze(0)
                err = 0.5 * (d * d).sum(dim=2)
                total += err.sum(dim=1).double()
                wrong += err.sum(dim=1).double()
        loss = total / N
        error = wrong / N * (100.0 if self.spec.loss == "cross_entropy" else 1.0)
        # a member with non-finite parameters has error 100% (or inf) and loss inf
        bad = ~torch.stack([torch.isfinite(p.reshape(K, -1)).all(dim=1) for p in params]).all(dim=0)
        bad |= ~torch.isfinite(loss)
        loss = torch.where(bad, torch.full_like(loss, float("inf")), loss)
        fail = 100.0 if self.spec.loss == "cross_entropy" else float("inf")
        error = torch.where(bad, torch.full_like(error, fail), error)
        return error, loss


class FusedSGD:
    """Plain SGD on K members, ``W <- W - rate (dL/dW + lambda W)``, in few passes over the weights.

    The trainer's hot path for rules with ``Rule.scalar_rate`` (SGD under its 1/t schedule). On the
    CPU a step is bound by memory traffic and by how well each kernel streams, so the step keeps its
    own working copy of the weights between calls to :meth:`sync`:

    * **Transposed**, ``[K, fan_out, fan_in]``: the rank-1 update ``h delta^T`` then runs along
      contiguous rows of length fan_in (784 or 3072) instead of rows of 10 outputs, and all three
      products (forward, backward, update) are in the layouts BLAS streams fastest (M0, K = 100:
      73k -> 261k member-updates/s, ``benchmarks/throughput.py``).
    * **L2 decay as a scale**: each matrix is held as ``W = s V`` with a per-member scalar ``s`` (as in
      Bottou's SGD code), so the decay ``W <- (1 - rate lambda) W`` is ``s <- (1 - rate lambda) s`` (no
      pass over the weights) and the gradient step adds ``-rate h delta^T / s`` to ``V``.
    * **Deferred rank-1 updates** for large matrices (at least ``defer_min`` weights per member): the
      update is appended to a pending low-rank term, ``W = s (V + U^T P)`` with ``P`` the last inputs
      ``h`` and ``U`` the scaled steps, and folded into ``V`` by one matrix product every ``rank``
      steps. Forward and backward use the pending term exactly (``h^T W = s (h^T V + (P h)^T U)``,
      ``W delta = s (V delta + P^T (U delta))``), so such a layer costs about one read of ``V`` per
      step instead of a read and a read-write (C1, K = 4: 2.0k -> 3.9k member-updates/s).
    * **First layer a window ahead**: the inputs of the next steps are known (each member's sample
      order), and between folds the first layer's ``V`` does not change. Given ``ahead`` (the inputs
      of this step and the next ones), one batched product ``X V^T`` over a window of ``rank`` steps
      gives every step's ``x^T V`` at once (a matrix product reads ``V`` once per window instead of a
      matrix-vector product once per step); each step adds only its pending term ``(P x)^T U``. The
      first layer is deferred from ``first_min`` weights on if it has at least ``4 rank`` outputs, so
      this covers M1 as well (M1, K = 65: 33k -> 67k member-updates/s; not M0 or C0, whose 10
      outputs make the pending term as costly as ``V`` itself).

    :meth:`sync` writes ``W`` back into ``params`` (the trainer calls it before every divergence check,
    evaluation and member drop: every 1000 steps at least); until then ``params``' weight matrices are
    stale. The result equals the plain update up to float rounding (tests check it in float64). With
    K > 1 BLAS may pick kernels by batch size, so members equal separately trained members to float
    rounding, not bit for bit.
    """

    def __init__(self, spec: MLPSpec, *, rank: int = 16, defer_min: int = 200_000, first_min: int = 20_000):
        self.spec = spec
        self.rank = int(rank)
        self.defer_min = int(defer_min)
        self.first_min = int(first_min)
        self._window: Tensor | None = None  # x^T V of the first layer for the steps of the current window
        self._window_at = 0  # the next unused step of the window
        self._weights: list[Tensor] | None = None  # V_k transposed: [K, fan_out, fan_in]
        self._scales: list[Tensor] = []  # s_k: [K, 1]
        self._pending: list[tuple[Tensor, Tensor] | None] = []  # (P [K, rank, fan_in], U [K, rank, fan_out])
        self._count = 0  # pending columns in use
        self._any_deferred = False
        self._eye: Tensor | None = None

    def deferred(self, fan_in: int, fan_out: int, first: bool = False) -> bool:
        """Whether a layer's updates are deferred (also used to size ensemble chunks)."""
        if self.rank <= 1:
            return False
        if first and fan_out >= 4 * self.rank:  # narrower, the pending term costs as much as V (C0, M0: out 10)
            return fan_in * fan_out >= min(self.first_min, self.defer_min)
        return fan_in * fan_out >= self.defer_min

    def _start(self, params: Sequence[Tensor]) -> None:
        K = params[0].shape[0]
        self._weights = [params[2 * k].transpose(1, 2).contiguous() for k in range(self.spec.n_layers)]
        self._scales = [params[0].new_ones(K, 1) for _ in self._weights]
        self._pending = [(W.new_zeros(K, self.rank, W.shape[2]), W.new_zeros(K, self.rank, W.shape[1]))
                         if self.deferred(W.shape[2], W.shape[1], first=k == 0) else None
                         for k, W in enumerate(self._weights)]
        self._any_deferred = any(p is not None for p in self._pending)
        self._count = 0
        self._window = None

    def _flush(self) -> None:
        """Fold the pending updates into the working weights: V += U^T P."""
        c = self._count
        if c:
            for V, pend in zip(self._weights, self._pending):
                if pend is not None:
                    V.baddbmm_(pend[1][:, :c].transpose(1, 2), pend[0][:, :c])
        self._count = 0
        self._window = None  # it was computed from the old V

    @torch.no_grad()
    def sync(self, params: Sequence[Tensor]) -> None:
        """Write the working weights ``W = s (V + U^T P)`` back into ``params``."""
        if self._weights is not None:
            self._flush()
            for k, (V, s) in enumerate(zip(self._weights, self._scales)):
                params[2 * k].copy_(V.mul_(s.unsqueeze(2)).transpose(1, 2))
            self._weights = None

    @torch.no_grad()
    def __call__(self, params: Sequence[Tensor], x: Tensor, target: Tensor, rate: Tensor,
                 ahead: Callable[[int], Tensor] | None = None) -> None:
        """One step of every member on its sample ``x`` [K, D]; ``target``: class [K] or vector [K, out].

        ``ahead(j)``, optional: the inputs [K, w, D] of this step and the next ones, ``1 <= w <= j``
        (fewer where the order ends or the caller will sync); ``ahead(j)[:, 0]`` must equal ``x``."""
        spec = self.spec
        n = spec.n_layers
        if self._weights is None:
            self._start(params)
        if ahead is None:
            self._window = None
        elif self._pending[0] is not None and (self._window is None or self._window_at == self._window.shape[1]):
            if self._count:  # the last window ended before a fold (the order ended): fold now
                self._flush()
            self._window = torch.bmm(ahead(self.rank), self._weights[0].transpose(1, 2))  # [K, w, out]
            self._window_at = 0
        weights, scales, pending, c = self._weights, self._scales, self._pending, self._count
        hs = [x]
        h = x
        for k in range(n):  # forward:  a = s (h^T V + (P h)^T U) + b
            if k == 0 and self._window is not None:
                a = self._window[:, self._window_at : self._window_at + 1]  # x^T V, computed a window ahead
                self._window_at += 1
            else:
                a = torch.bmm(h.unsqueeze(1), weights[k].transpose(1, 2))
            if pending[k] is not None and c:
                P, U = pending[k][0][:, :c], pending[k][1][:, :c]
                a = torch.baddbmm(a, torch.bmm(h.unsqueeze(1), P.transpose(1, 2)), U)
            a = torch.addcmul(params[2 * k + 1], a.squeeze(1), scales[k])
            if k < n - 1:
                h = torch.tanh(a)
                hs.append(h)
        if spec.loss == "cross_entropy":  # dL/da = softmax(a) - onehot(target)
            if self._eye is None or self._eye.shape[0] != a.shape[1] or self._eye.dtype != a.dtype:
                self._eye = torch.eye(a.shape[1], dtype=a.dtype, device=a.device)
            delta = torch.softmax(a, dim=1).sub_(self._eye[target])
        else:
            delta = a - target
        r = rate.view(-1, 1)
        decay = 1 - r * spec.l2
        for k in reversed(range(n)):
            V, b, h, s, pend = weights[k], params[2 * k + 1], hs[k], scales[k], pending[k]
            step = delta * -r  # -rate dL/da
            if k > 0:  # propagate through the old weights: dL/dh = s (V delta + P^T (U delta)), then tanh'
                back = torch.bmm(delta.unsqueeze(1), V)
                if pend is not None and c:
                    P, U = pend[0][:, :c], pend[1][:, :c]
                    back.baddbmm_(torch.bmm(delta.unsqueeze(1), U.transpose(1, 2)), P)
                delta = back.squeeze(1).mul_(s).mul_(1 - h * h)
            s.mul_(decay)  # W <- (1 - rate lambda) W
            u = step / s  # W <- W - rate h delta^T, in units of s
            if pend is None:
                V.addcmul_(u.unsqueeze(2), h.unsqueeze(1))
            else:
                pend[0][:, c] = h
                pend[1][:, c] = u
            if spec.l2_biases:
                b.mul_(decay)
            b.add_(step)
        if self._any_deferred:
            self._count = c + 1
            if self._count == self.rank:
                self._flush()
