"""Variable projection (VPNLS) for the Chinchilla family: the global least-squares start of the Huber-log fit.

For fixed exponents (alpha, beta) the law L = E + A/N^alpha + B/D^beta is linear in (E, A, B). The least-squares
fit is then a profile over two numbers: for each (alpha, beta), a non-negative linear solve gives the best
(E, A, B) and its residual sum of squares, so a grid over (alpha, beta) followed by a 2-D refinement of the
profile finds the global least-squares optimum without depending on where a non-linear search starts.

The residuals here are relative, (Lhat - L) / L, times optional point weights: to first order the log residual
the project's Huber objective uses, so the least-squares optimum lies in the basin of the Huber-log optimum.
fit.py refines these starts with the existing batched L-BFGS (`fit_law(..., method="vpnls")`); the final
estimate is the Huber-log optimum.

Members: chinchilla, chinchilla_tied (one exponent, alpha = beta), fix_e (E known: only A, B solved),
data_constrained (D replaced by its effective value) and overtrain (chinchilla_tied in other coordinates).
chinchilla_shared_e is not supported (its exponents are 4k-dimensional): `supports` says no and fit.py keeps
the grid of L-BFGS starts.

Two solvers of the same non-negative least squares: scipy.optimize.nnls on the explicit design (accurate; the
2-D refinement) and an exact batched active-set enumeration over the normal equations (the grid; every subset
of the <= 3 columns is solved unconstrained, and the best feasible one is the NNLS optimum), which profiles a
whole grid for thousands of bootstrap resamples in a few matrix products.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.optimize import minimize, nnls

from scalinglab.laws.forms import Chinchilla, Form, OverTraining

EXPONENT_RANGE = (0.02, 2.5)  # the grid's exponents: the published start grid's 0..2 and a margin
GRID_SIZE = 80  # exponents per axis in the full-data profile
HUBER_GRID_SIZE = 40  # exponents per axis in the Huber profile (each point its own reweighted solve)
BOOT_GRID_SIZE = 32  # exponents per axis in each bootstrap resample's profile (L-BFGS refines the rest)
MAX_EXPONENT = 10.0  # the 2-D refinement's upper bound (beyond, a term is a step at the smallest sizes)
FLOOR = 1e-2  # a linear coefficient the solve puts at 0 starts at this fraction of the smallest loss


def supports(form: Form) -> bool:
    return isinstance(form, (Chinchilla, OverTraining))


def _spec(form: Form, X: dict):
    """(log N, log D the law sees, tied?, fixed E or None)."""
    if isinstance(form, OverTraining):
        return np.log(X["N"]), np.log(X["D"]), True, None
    ln, ld = form._transform(X)
    return np.asarray(ln, float), np.asarray(ld, float), form.tied, form.fix_e


def _solve_small(G: dict, r: dict, S: tuple) -> list:
    """Solve the symmetric system G[S, S] c = r[S] (|S| <= 3; G and r: entries by index, arrays of one shape) in
    closed form, adjugate over determinant: numpy's batched solve costs far more than the arithmetic here."""
    if len(S) == 1:
        (i,) = S
        return [r[i] / G[i, i]]
    if len(S) == 2:
        i, j = S
        a, b, d = G[i, i], G[i, j], G[j, j]
        det = a * d - b * b
        return [(d * r[i] - b * r[j]) / det, (a * r[j] - b * r[i]) / det]
    i, j, k = S
    a, b, c, d, e, f = G[i, i], G[i, j], G[i, k], G[j, j], G[j, k], G[k, k]
    adj = [[d * f - e * e, c * e - b * f, b * e - c * d],
           [c * e - b * f, a * f - c * c, b * c - a * e],
           [b * e - c * d, b * c - a * e, a * d - b * b]]
    det = a * adj[0][0] + b * adj[0][1] + c * adj[0][2]
    rr = (r[i], r[j], r[k])
    return [sum(adj[m][n] * rr[n] for n in range(3)) / det for m in range(3)]


def _nnls_small(gram, rhs, yy, cols, shape):
    """Exact NNLS of a batch of problems with <= 3 columns from their normal equations: every subset of the
    columns solved unconstrained (columns scaled to unit norm), the best one with non-negative coefficients kept
    (the NNLS optimum is the unconstrained optimum on its own support). gram(i, j), rhs(i): arrays of `shape`.
    Returns (RSS, coefficients (shape + (3,)), zero outside cols)."""
    scale = {j: np.sqrt(np.maximum(gram(j, j), 1e-300)) for j in cols}
    Gn = {(i, j): (1.0 + 1e-12 if i == j else gram(i, j) / (scale[i] * scale[j]))
          for i in cols for j in cols}  # unit diagonal (a tiny ridge keeps it invertible)
    rn = {i: rhs(i) / scale[i] for i in cols}
    best = np.array(yy, dtype=float, copy=True)  # the empty subset: all coefficients 0
    coef = np.zeros(shape + (3,))
    for k in range(1, len(cols) + 1):
        for S in itertools.combinations(cols, k):
            c = _solve_small(Gn, rn, S)
            rss = yy - sum(ci * rn[i] for ci, i in zip(c, S))  # at the solution of G c = r: y'y - c'r
            ok = rss < best
            for ci in c:
                ok &= ci >= 0
            best = np.where(ok, rss, best)
            for i in cols:  # the subset's solution replaces the whole vector (columns outside it: 0)
                val = c[S.index(i)] / scale[i] if i in S else 0.0
                coef[..., i] = np.where(ok, val, coef[..., i])
    return best, coef


def _local_minima(vals: np.ndarray, g: np.ndarray, n_best: int):
    """The n_best lowest local minima (against every neighbour) of a profile on the grid g x g (or g, tied):
    [(exponents, value)], best first."""
    pad = np.pad(vals, 1, constant_values=np.inf)
    is_min = np.isfinite(vals)
    offsets = [-1, 0, 1]
    for off in (itertools.product(offsets, offsets) if vals.ndim == 2 else ((o,) for o in offsets)):
        if any(off):
            sl = tuple(slice(1 + o, 1 + o + n) for o, n in zip(off, vals.shape))
            is_min &= vals <= pad[sl]
    flat = [i for i in np.argsort(vals, axis=None) if is_min.ravel()[i]]
    idx = [np.unravel_index(i, vals.shape) for i in flat[:n_best]] or [np.unravel_index(0, vals.shape)]
    return [(np.array([g[i] for i in ij]), float(vals[ij])) for ij in idx]


class Profile:
    """The least-squares profile of one data set: for exponents (alpha, beta), the best non-negative (E, A, B) and
    the weighted sum of squared relative residuals. Picklable (the bootstrap ships it to worker processes)."""

    def __init__(self, form: Form, X: dict, y: np.ndarray, weights: np.ndarray | None = None):
        if not supports(form):
            raise ValueError(f"VPNLS supports the chinchilla family, not {form.name}")
        self.form = form
        self.ln, self.ld, self.tied, self.fix_e = _spec(form, X)
        self.y = np.asarray(y, float)
        self.mln, self.mld = float(self.ln.mean()), float(self.ld.mean())  # centre the powers: no overflow
        self.target = self.y - (self.fix_e or 0.0)
        base = 1.0 / self.y ** 2  # relative residuals
        self.w = base if weights is None else base * np.asarray(weights, float)
        self.cols = [1, 2] if self.fix_e is not None else [0, 1, 2]

    # -- one point: the accurate solve -----------------------------------------------------------------------
    def design(self, alpha: float, beta: float) -> np.ndarray:
        c = [np.ones_like(self.y), np.exp(-alpha * (self.ln - self.mln)), np.exp(-beta * (self.ld - self.mld))]
        return np.stack([c[j] for j in self.cols], axis=1)

    def solve(self, alpha: float, beta: float, w: np.ndarray | None = None):
        """(coefficients on the centred columns, weighted RSS) by scipy's NNLS on the column-scaled design."""
        w = self.w if w is None else w
        sw = np.sqrt(w)
        M = self.design(alpha, beta) * sw[:, None]
        s = np.linalg.norm(M, axis=0)
        s = np.where(s > 0, s, 1.0)
        coef, rnorm = nnls(M / s, self.target * sw, maxiter=50 * M.shape[1])
        return coef / s, float(rnorm ** 2)

    def rss(self, exps, hw: np.ndarray | None = None) -> float:
        """The profile at (alpha,) or (alpha, beta); hw: extra point weights (the Huber weights of IRLS)."""
        alpha, beta = (exps[0], exps[0]) if self.tied else (exps[0], exps[1])
        if not (EXPONENT_RANGE[0] <= min(alpha, beta) and max(alpha, beta) <= MAX_EXPONENT):
            return np.inf
        return self.solve(alpha, beta, None if hw is None else self.w * hw)[1]

    def natural(self, alpha: float, beta: float, coef: np.ndarray) -> np.ndarray:
        """Chinchilla's (E, A, B, alpha, beta) from the centred coefficients, zeros raised to a small floor."""
        full = np.zeros(3)
        full[self.cols] = coef
        floor = FLOOR * float(self.y.min())
        E = self.fix_e if self.fix_e is not None else max(full[0], floor)
        A = max(full[1], floor) * math.exp(alpha * self.mln)
        B = max(full[2], floor) * math.exp(beta * self.mld)
        return np.array([E, A, B, alpha, beta])

    def internal(self, theta: np.ndarray) -> np.ndarray:
        """Natural Chinchilla rows (K, 5) -> the form's internal rows."""
        theta = np.atleast_2d(theta)
        if isinstance(self.form, OverTraining):
            eta = theta[:, 3] / 2
            nat = np.stack([theta[:, 0], theta[:, 1] * 6.0 ** eta, theta[:, 2] * 6.0 ** eta, eta], axis=1)
            return self.form.to_internal(nat)
        return self.form.to_internal(theta)

    # -- a grid for many weight rows at once: the batched exact NNLS -------------------------------------------
    def grid_profile(self, alphas: np.ndarray, betas: np.ndarray | None = None, W: np.ndarray | None = None):
        """RSS (K, Ga, Gb) (tied: (K, Ga)) and coefficients (K, Ga, Gb, 3) on the grid, for each row of W
        (point weights of K resamples; None: the profile's own weights)."""
        W = self.w[None, :] if W is None else np.atleast_2d(W) * self.w[None, :]
        U = np.exp(-np.outer(alphas, self.ln - self.mln))  # (Ga, n)
        V = np.exp(-np.outer(alphas if self.tied else betas, self.ld - self.mld))  # (Gb, n)
        t = self.target
        K, Ga, Gb = W.shape[0], U.shape[0], V.shape[0]
        shape = (K, Ga) if self.tied else (K, Ga, Gb)

        def pair(P, Q):  # sum_n w_kn P_in Q_jn for each k (tied: the diagonal i = j only)
            if self.tied:
                return W @ (P * Q).T  # (K, Ga)
            return np.einsum("kn,in,jn->kij", W, P, Q, optimize=True)

        def expand(a, axis):  # (K, G) of one column -> the grid's shape
            if self.tied:
                return a
            return a[:, :, None] if axis == 0 else a[:, None, :]

        one = np.ones((1, t.size))
        sums = {  # Gram entries and right-hand sides over the columns 0 (1), 1 (u), 2 (v)
            (0, 0): expand(np.broadcast_to((W @ one.T), (K, Ga)), 0),
            (0, 1): expand(W @ U.T, 0), (0, 2): expand(W @ V.T, 1),
            (1, 1): expand(W @ (U * U).T, 0), (2, 2): expand(W @ (V * V).T, 1),
            (1, 2): pair(U, V),
        }
        rhs = {0: expand(np.broadcast_to(W @ t[:, None], (K, Ga)), 0), 1: expand(W @ (U * t).T, 0),
               2: expand(W @ (V * t).T, 1)}
        yy = (W @ t ** 2)
        yy = yy[:, None] if self.tied else yy[:, None, None]

        return _nnls_small(lambda i, j: np.broadcast_to(sums[(min(i, j), max(i, j))], shape),
                           lambda i: np.broadcast_to(rhs[i], shape), np.broadcast_to(yy, shape), self.cols, shape)

    def huber_grid(self, alphas: np.ndarray, delta: float, iters: int = 25):
        """The Huber profile: at each grid point (alpha, beta) the non-negative (E, A, B) minimising
        sum w Huber_delta(relative residual), by iteratively reweighted least squares (each iteration the exact
        NNLS above with the Huber weights min(1, delta/|r|) of that point's own residuals). Returns the Huber
        loss (Ga, Gb) (tied: (Ga,)) and the coefficients (..., 3)."""
        U = np.exp(-np.outer(alphas, self.ln - self.mln))
        V = np.exp(-np.outer(alphas, self.ld - self.mld))
        if self.tied:
            Ug, Vg, shape = U, V, (U.shape[0],)
        else:
            Ug, Vg, shape = U[:, None, :], V[None, :, :], (U.shape[0], V.shape[0])
        t, one = self.target, np.ones(1)
        cols_arr = {0: one, 1: Ug, 2: Vg}
        hw = np.ones(shape + (t.size,))
        for _ in range(iters):
            Wt = hw * self.w
            sums = {(i, j): (Wt * cols_arr[i] * cols_arr[j]).sum(-1) for i in self.cols for j in self.cols if i <= j}
            rhs = {i: (Wt * cols_arr[i] * t).sum(-1) for i in self.cols}
            _, coef = _nnls_small(lambda i, j: np.broadcast_to(sums[(min(i, j), max(i, j))], shape),
                                  lambda i: np.broadcast_to(rhs[i], shape), (Wt * t * t).sum(-1), self.cols, shape)
            fit = sum(coef[..., i, None] * cols_arr[i] for i in self.cols)
            r = (fit - t) / self.y
            new = np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))
            done = np.max(np.abs(new - hw)) < 1e-6
            hw = new
            if done:
                break
        c = np.clip(r, -delta, delta)
        return (self.w * c * (r - 0.5 * c)).sum(-1), coef

    # -- the fit ------------------------------------------------------------------------------------------------
    def exponent_grid(self, size: int) -> np.ndarray:
        return np.linspace(EXPONENT_RANGE[0], EXPONENT_RANGE[1], size)

    def _refine(self, x0: np.ndarray, f0: float, step: float, hw: np.ndarray | None = None):
        """Nelder-Mead on the profile from a grid point, inside the exponents' bounds: (natural parameters, RSS)."""
        simplex = np.vstack([x0] + [x0 + step * e for e in np.eye(x0.size)])
        r = minimize(self.rss, x0, args=(hw,), method="Nelder-Mead",
                     bounds=[(EXPONENT_RANGE[0], MAX_EXPONENT)] * x0.size,
                     options={"initial_simplex": simplex, "xatol": 1e-10, "fatol": 1e-12 * f0,
                              "maxiter": 4000, "maxfev": 8000})
        x = r.x if r.fun <= f0 else x0
        alpha, beta = (x[0], x[0]) if self.tied else (x[0], x[1])
        coef, f = self.solve(alpha, beta, None if hw is None else self.w * hw)
        return self.natural(alpha, beta, coef), f

    def _best(self, g: np.ndarray, hw: np.ndarray | None = None, n_best: int = 1):
        """The least-squares profile's n_best lowest local minima on the grid g: [(exponents, RSS)]."""
        return _local_minima(self.grid_profile(g, g, None if hw is None else hw[None, :])[0][0], g, n_best)

    def predict(self, theta: np.ndarray) -> np.ndarray:
        E, A, B, alpha, beta = theta
        return E + A * np.exp(-alpha * self.ln) + B * np.exp(-beta * self.ld)

    def fit(self, size: int = GRID_SIZE, n_best: int = 3, delta: float | None = None):
        """The global least-squares optimum and up to n_best - 1 other local minima of the profile, each refined
        in 2-D by Nelder-Mead: a list of (natural parameters (5,), RSS), best first.

        delta: also the n_best lowest local minima of the Huber profile (huber_grid: threshold delta on the
        relative residuals, the project's objective to first order), appended with their Huber losses. Where the
        least-squares and the Huber optima lie in different basins (outliers, a term that hardly moves the
        loss), these starts are in the Huber ones."""
        g = self.exponent_grid(size)
        step = g[1] - g[0]
        out = [self._refine(x0, f0, step) for x0, f0 in self._best(g, n_best=n_best)]
        out.sort(key=lambda t: t[1])
        if delta is None:
            return out
        gh = self.exponent_grid(HUBER_GRID_SIZE)
        loss, coef = self.huber_grid(gh, delta)
        for x, f in _local_minima(loss, gh, n_best):
            ij = tuple(int(np.argmin(np.abs(gh - v))) for v in x)
            alpha, beta = (x[0], x[0]) if self.tied else (x[0], x[1])
            out.append((self.natural(alpha, beta, coef[ij][self.cols]), f))
        return out

    def __call__(self, W: np.ndarray) -> np.ndarray:
        """Internal starting rows (K, P), one per row of W (bootstrap point weights): each resample's best grid
        point of the profile."""
        g = self.exponent_grid(BOOT_GRID_SIZE)
        rows = []
        for lo in range(0, W.shape[0], 64):  # the grid's cross sums are (chunk, Ga, Gb): bounded memory
            rss, coef = self.grid_profile(g, g, W[lo:lo + 64])
            for k in range(rss.shape[0]):
                ij = np.unravel_index(int(np.argmin(rss[k])), rss[k].shape)
                alpha = g[ij[0]]
                beta = alpha if self.tied else g[ij[1]]
                rows.append(self.natural(alpha, beta, coef[k][ij][self.cols]))
        return self.internal(np.array(rows))


def vpnls(form: Form, X: dict, y: np.ndarray, weights: np.ndarray | None = None, *, size: int = GRID_SIZE,
          n_best: int = 3, delta: float | None = None):
    """The least-squares optimum of a Chinchilla-family form by variable projection: (natural Chinchilla
    parameters (E, A, B, alpha, beta), weighted RSS of relative residuals, internal starts of the form (up to
    n_best rows, the global optimum first; with delta, the Huber IRLS optimum last))."""
    prof = Profile(form, X, y, weights)
    found = prof.fit(size=size, n_best=n_best, delta=delta)
    return found[0][0], found[0][1], prof.internal(np.array([t for t, _ in found]))
