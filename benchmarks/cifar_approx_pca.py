"""How much the approximate CIFAR copy's JPEG rows lower a reconstruction error (CR, results/README.md).

    python benchmarks/cifar_approx_pca.py

Rows 0-3999 of the copy's data_batch_1 are exact; the other training rows and the whole test set were
decoded from a JPEG re-encode (../shared/data/cifar-10-approx/README.md). A 120-unit autoencoder
(CR) is close to a rank-120 projection, so this compares the residual 1/2 ||x - P x||^2 of the best
rank-120 projection (PCA of the preprocessed training set) on exact against JPEG rows.
"""
import torch

from experiments.data import load


def best_projection(X: torch.Tensor, rank: int = 120) -> torch.Tensor:
    """[D, rank] orthonormal basis of the best rank-`rank` projection of the rows of X (PCA, no centring:
    X is already mean-subtracted as the trainer sees it)."""
    X = X.double()
    _, vecs = torch.linalg.eigh(X.T @ X / X.shape[0])
    return vecs[:, -rank:]


def residual(Z: torch.Tensor, V: torch.Tensor) -> float:
    """Mean over rows of 1/2 ||z - V V^T z||^2 (CR's loss, for the linear stand-in of its autoencoder)."""
    Z = Z.double()
    return (0.5 * ((Z - Z @ V @ V.T) ** 2).sum(1)).mean().item()


def main() -> None:
    torch.set_num_threads(1)
    d = load("cifar10_batch1")
    X = d.x_train  # as the trainer sees it: [0, 1] scaled, training mean subtracted
    V = best_projection(X)
    exact, jpeg, test = residual(X[:4000], V), residual(X[4000:], V), residual(d.x_test, V)
    print(f"rank-120 residual 1/2||x - Px||^2 per image: exact rows 0-3999 {exact:.2f}, "
          f"JPEG rows 4000-9999 {jpeg:.2f} (ratio {jpeg / exact:.3f}), test set (JPEG) {test:.2f}")


if __name__ == "__main__":
    main()
