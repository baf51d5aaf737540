"""Harmonic (Laplace) fill: the smoothest interpolation of the known voxels into the mask.

Inside the mask the fill solves the discrete Laplace equation on the 6-neighbour grid,
``sum_j (u_i - u_j) = 0`` over the neighbours ``j`` of every masked voxel ``i`` that lie inside the volume.
Neighbours outside the mask are known voxels and act as Dirichlet boundary values. A masked voxel on the volume
border simply has fewer neighbours: no flux leaves the volume (a zero-Neumann condition). Any function that is
linear along the directions in which the mask is bounded (for example ``a x + b y + c z`` with the mask away from
the border) satisfies the equations and is reproduced up to the solver tolerance.

The linear system lives only on the masked voxels (inside the mask's bounding box grown by one voxel), is
symmetric positive definite whenever at least one voxel is known, and is solved with conjugate gradients (Jacobi
preconditioned) started from the mean of the boundary values. The solver is written with element-wise numpy
operations and a sparse product only: BLAS dot products on these short vectors are slowed down badly by
multi-threaded BLAS on a busy machine.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from wdm_inpaint.fill.common import BACKGROUND_VALUE, grown_box, output_like, prepare_inputs

logger = logging.getLogger(__name__)

HARMONIC_RTOL: float = 1e-10
"""Relative residual ``||b - A u|| / ||b||`` at which conjugate gradients stops."""

HARMONIC_MAXITER_FACTOR: int = 20
"""Iteration cap = this factor times the longest side of the masked region's box (CG needs about that side)."""


def _laplace_system(values: np.ndarray, unknown: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray, int]:
    """Assemble ``A u = b`` for the unknown voxels of a box.

    Args:
        values: float64 box of the image (known voxels hold the boundary values).
        unknown: boolean box, ``True`` where the value is solved for.

    Returns:
        ``A`` (n x n, CSR: degree on the diagonal, -1 per unknown neighbour), ``b`` (sum of the known neighbours
        of each unknown) and the number of unknown-known neighbour pairs.
    """
    n = int(unknown.sum())
    index = np.full(unknown.shape, -1, dtype=np.int64)
    index[unknown] = np.arange(n)
    degree = np.zeros(n)
    rhs = np.zeros(n)
    known_links = 0
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for axis in range(3):
        for step in (1, -1):
            here = [slice(None)] * 3
            there = [slice(None)] * 3
            if step == 1:
                here[axis], there[axis] = slice(0, -1), slice(1, None)
            else:
                here[axis], there[axis] = slice(1, None), slice(0, -1)
            src = index[tuple(here)]
            dst = index[tuple(there)]
            has_src = src >= 0
            degree += np.bincount(src[has_src], minlength=n)
            link = has_src & (dst >= 0)
            rows.append(src[link])
            cols.append(dst[link])
            known = has_src & (dst < 0)
            known_links += int(known.sum())
            rhs += np.bincount(src[known], weights=values[tuple(there)][known], minlength=n)
    row = np.concatenate(rows)
    col = np.concatenate(cols)
    off = sp.csr_matrix((-np.ones(row.size), (row, col)), shape=(n, n))
    return (off + sp.diags(degree)).tocsr(), rhs, known_links


def conjugate_gradient(
    matrix: sp.csr_matrix, rhs: np.ndarray, start: np.ndarray, rtol: float, maxiter: int
) -> tuple[np.ndarray, int, float]:
    """Jacobi-preconditioned conjugate gradients for a symmetric positive definite ``matrix``.

    Args:
        matrix: (n, n) SPD sparse matrix.
        rhs: (n,) right-hand side.
        start: (n,) initial guess.
        rtol: stop when ``||rhs - matrix @ x|| <= rtol * ||rhs||``.
        maxiter: iteration cap.

    Returns:
        ``(x, iterations, relative_residual)``.
    """
    inv_diag = 1.0 / matrix.diagonal()
    x = start.astype(np.float64, copy=True)
    r = rhs - matrix @ x
    target = rtol * max(float(np.sqrt((rhs * rhs).sum())), np.finfo(np.float64).tiny)
    z = inv_diag * r
    p = z.copy()
    rz = float((r * z).sum())
    iterations = 0
    residual = float(np.sqrt((r * r).sum()))
    while residual > target and iterations < maxiter:
        q = matrix @ p
        alpha = rz / float((p * q).sum())
        x += alpha * p
        r -= alpha * q
        residual = float(np.sqrt((r * r).sum()))
        iterations += 1
        z = inv_diag * r
        rz_next = float((r * z).sum())
        p *= rz_next / rz
        p += z
        rz = rz_next
    return x, iterations, residual / (target / rtol)


def harmonic_fill(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill the mask with the harmonic interpolation of the surrounding known voxels.

    Args:
        image: ``(X, Y, Z)`` volume; values inside the mask are ignored.
        mask: ``(X, Y, Z)``; non-zero marks the voxels to fill.

    Returns:
        A new array (the image's dtype if floating, else float64). Voxels outside the mask equal the input bit
        for bit. An empty mask returns a copy; a mask covering everything is filled with
        :data:`BACKGROUND_VALUE` (with a warning).

    Raises:
        ValueError: on shape mismatch, a non-3-D input, or a non-finite known voxel next to the mask.
    """
    image, mask_bool = prepare_inputs(image, mask)
    out = output_like(image)
    if not mask_bool.any():
        return out
    if mask_bool.all():
        logger.warning(
            "the mask covers the whole volume: nothing to interpolate from, filling with %s", BACKGROUND_VALUE
        )
        out[...] = BACKGROUND_VALUE
        return out
    box = grown_box(mask_bool, margin=1)
    unknown = mask_bool[box]
    values = np.asarray(image[box], dtype=np.float64)
    matrix, rhs, known_links = _laplace_system(values, unknown)
    if not np.all(np.isfinite(rhs)):
        raise ValueError("a known voxel next to the mask is NaN or infinite: replace non-finite values before filling")
    start = np.full(rhs.size, rhs.sum() / known_links)
    maxiter = HARMONIC_MAXITER_FACTOR * max(s.stop - s.start for s in box)
    solution, iterations, residual = conjugate_gradient(matrix, rhs, start, HARMONIC_RTOL, maxiter)
    if residual > HARMONIC_RTOL:
        logger.warning("harmonic fill: CG stopped after %d iterations at relative residual %.2e", iterations, residual)
    region = out[box]
    region[unknown] = solution.astype(out.dtype, copy=False)
    logger.debug("harmonic fill of %d voxels: %d CG iterations, relative residual %.1e", rhs.size, iterations, residual)
    return out


__all__ = ["HARMONIC_MAXITER_FACTOR", "HARMONIC_RTOL", "conjugate_gradient", "harmonic_fill"]
