"""How much the approximate CIFAR copy's JPEG rows lower a reconstruction error (CR, results/README.md).

    python benchmarks/cifar_approx_pca.py

Rows 0-3999 of the copy's data_batch_1 are exact; the other training rows and the whole test set were
decoded from a JPEG re-encode (../shared/data/cifar-10-approx/README.md). A 120-unit autoencoder
(CR) is close to a rank-120 projection, so this compares the residual 1/2 ||x - P x||^2 of the best
rank-120 projection (PCA of the preprocessed training set) on exact against JPEG rows.
"""
import torch

from experiments.data import load

torch.set_num_threads(1)
d = load("cifar10_batch1")
X = d.x_train.double()  # preprocessed: [0,1] scaled, training mean subtracted
C = X.T @ X / X.shape[0]
evals, evecs = torch.linalg.eigh(C)
V = evecs[:, -120:]
def resid(Z):
    R = Z - (Z @ V) @ V.T
    return (0.5 * (R ** 2).sum(1)).mean().item(), (0.5 * (Z ** 2).sum(1)).mean().item()
a = resid(X[:4000]); b = resid(X[4000:]); t = resid(d.x_test.double())
print("PCA-120 residual 1/2||r||^2 per image: exact rows 0-3999 %.2f (total %.1f); JPEG rows 4000-9999 %.2f (total %.1f); test (JPEG) %.2f" % (a[0], a[1], b[0], b[1], t[0]))
print("ratio JPEG/exact residual %.3f" % (b[0] / a[0]))
