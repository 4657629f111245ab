"""Estimation: a Huber loss on log residuals, minimised by L-BFGS from many starting points at once.

Hoffmann et al. (2022) minimise sum_i Huber_delta(log Lhat_i - log L_i) with L-BFGS from a grid of starts and
keep the best. Doing that with one scipy call per start costs milliseconds each; a grid of 4,500 starts and
4,000 bootstrap resamples would take minutes. So the objective is evaluated for K parameter vectors at once
(a (K, n) numpy expression, with its analytic gradient), and `lbfgs_batched` runs K independent L-BFGS
problems in lock step, each with its own history, line search and stopping test. The best candidate is then
polished with scipy's L-BFGS-B, whose verdict is the one the fit reports as `converged`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from scalinglab.laws.forms import Form


class Objective:
    """Mean Huber loss of log residuals, divided by delta so that its scale is ~ mean |residual|.

    weights: (n,) shared by all rows, or (K, n), one row per problem (bootstrap resample counts x weights).
    overestimate: the over-estimate penalty, an asymmetric Huber loss: a residual where the law predicts more
    than was measured (log Lhat > log L) weighs 1 + overestimate times one where it predicts less (0: the
    symmetric loss of Hoffmann et al.).
    """

    def __init__(self, form: Form, X: dict, logy: np.ndarray, delta: float = 1e-3, overestimate: float = 0.0):
        self.form, self.X, self.logy, self.delta = form, X, np.asarray(logy, float), float(delta)
        self.overestimate = float(overestimate)
        self.rows_evaluated = 0  # work done, a load-independent measure of cost


    def __call__(self, Z: np.ndarray, W: np.ndarray | None = None, grad: bool = True):
        self.rows_evaluated += Z.shape[0]
        if grad:
            lp, J = self.form.log_predict(Z, self.X, jac=True)
        else:
            lp = self.form.log_predict(Z, self.X)
        r = lp - self.logy[None, :]
        d = self.delta
        c = np.clip(r, -d, d)
        h = c * (r - 0.5 * c)  # Huber: r^2/2 inside [-d, d], d|r| - d^2/2 outside
        if self.overestimate:
            side = np.where(r > 0, 1.0 + self.overestimate, 1.0)
            h *= side
            c *= side  # the derivative of side * Huber(r) (side is constant on each side of 0)
        if W is None:
            f = h.sum(axis=1) / (d * h.shape[1])
            wsum = np.full(h.shape[0], float(h.shape[1]))
        else:
            W = np.broadcast_to(W, r.shape)
            wsum = W.sum(axis=1)
            f = np.einsum("kn,kn->k", W, h) / (d * wsum)
            c *= W
        f = np.where(np.isfinite(f), f, np.inf)
        if not grad:
            return f
        c /= (d * wsum)[:, None]
        cols, cache = [], {}
        for arr, vec in J:
            key = id(arr)
            if key not in cache:
                cache[key] = (c * arr, arr)  # keep arr alive so its id stays unique
            ca = cache[key][0]
            cols.append(ca.sum(axis=1) if vec is None else ca @ vec)
        g = np.stack(cols, axis=1)
        g = np.where(np.isfinite(g), g, 0.0)
        return f, g


@dataclass
class BatchResult:
    Z: np.ndarray  # (K, P) final internal parameters
    f: np.ndarray  # (K,) objective values
    gnorm: np.ndarray  # (K,) max-abs gradient at the end
    converged: np.ndarray  # (K,) bool
    n_iter: np.ndarray  # (K,) iterations used


def lbfgs_batched(objective: Objective, Z0: np.ndarray, W: np.ndarray | None = None, *, max_iter: int = 1000,
                  m: int | None = None, gtol: float = 1e-6, ftol: float = 1e-9) -> BatchResult:
    """K independent L-BFGS minimisations run together (rows of Z0; W gives each row its data weights).

    Line search: backtracking (Armijo) from the unit step; curvature pairs with s.y <= 0 are skipped, which
    keeps the inverse-Hessian approximation positive definite without a Wolfe search. A row stops when its
    gradient is below gtol (max-abs) or its objective stops decreasing (relative change < ftol for two
    consecutive iterations, or no acceptable step).
    """
    Z = np.array(Z0, dtype=float)
    K, P = Z.shape
    if m is None:  # curvature pairs kept: 10 for the laws of <= 6 parameters; a joint fit of groups (shared
        m = 10 if P <= 6 else 30  # forms, 4k + 1 parameters) needs more (measured: 500 iterations left
        # 20 of 20 bootstrap resamples of a 3-group shared-E fit unconverged with 10, all converged in ~170 with 30)
    Wfull = None if W is None else np.asarray(W, float)

    def fg(idx, Zs):
        return objective(Zs, None if Wfull is None else Wfull[idx])

    f, g = fg(np.arange(K), Z)
    S = np.zeros((K, m, P))  # curvature pairs, newest at index 0 (a row's older pairs shift down one)
    Y = np.zeros((K, m, P))
    rho = np.zeros((K, m))
    n_hist = np.zeros(K, dtype=int)
    converged = np.zeros(K, dtype=bool)
    done = ~np.isfinite(f)
    stall = np.zeros(K, dtype=int)
    n_iter = np.zeros(K, dtype=int)
    gmax = np.abs(g).max(axis=1)
    converged |= gmax < gtol
    done |= converged

    for it in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        ga = g[act]
        # two-loop recursion over the j-th newest pairs; rows with fewer than j + 1 pairs get rho 0 (no effect)
        q = ga.copy()
        na = n_hist[act]
        alphas = np.zeros((act.size, m))
        Sa, Ya, ra = S[act], Y[act], rho[act]

        def pair(j):
            """(s, y, rho) of each row's j-th newest pair; rho 0 where a row has fewer than j + 1 pairs."""
            return Sa[:, j], Ya[:, j], np.where(j < na, ra[:, j], 0.0)

        for j in range(m):
            s_j, y_j, r_j = pair(j)
            a_j = r_j * np.einsum("kp,kp->k", s_j, q)
            alphas[:, j] = a_j
            q -= a_j[:, None] * y_j
        s_n, y_n, _ = pair(0)  # the newest pair scales the initial inverse Hessian
        yy = np.einsum("kp,kp->k", y_n, y_n)
        gamma = np.where((na > 0) & (yy > 0), np.einsum("kp,kp->k", s_n, y_n) / np.where(yy > 0, yy, 1.0), 1.0)
        q *= gamma[:, None]
        for j in range(m - 1, -1, -1):
            s_j, y_j, r_j = pair(j)
            b_j = r_j * np.einsum("kp,kp->k", y_j, q)
            q += (alphas[:, j] - b_j)[:, None] * s_j
        d = -q
        gd = np.einsum("kp,kp->k", ga, d)
        reset = ~(gd < 0) | ~np.isfinite(gd)
        if reset.any():  # not a descent direction: fall back to steepest descent and forget the history
            d[reset] = -ga[reset]
            gd[reset] = -np.einsum("kp,kp->k", ga[reset], ga[reset])
            n_hist[act[reset]] = 0
        step = np.ones(act.size)
        first = n_hist[act] == 0
        gn = np.sqrt(np.einsum("kp,kp->k", ga, ga))
        step[first] = np.minimum(1.0, 1.0 / np.maximum(gn[first], 1e-12))

        # backtracking line search, all rows together
        f_new = np.full(act.size, np.inf)
        g_new = np.zeros_like(ga)
        Z_new = Z[act].copy()
        searching = np.ones(act.size, dtype=bool)
        for _ in range(40):
            si = np.flatnonzero(searching)
            if si.size == 0:
                break
            Zt = Z[act[si]] + step[si, None] * d[si]
            ft, gt = fg(act[si], Zt)
            ok = np.isfinite(ft) & (ft <= f[act[si]] + 1e-4 * step[si] * gd[si])
            okk = si[ok]
            f_new[okk], g_new[okk], Z_new[okk] = ft[ok], gt[ok], Zt[ok]
            searching[okk] = False
            step[si[~ok]] *= 0.5
        failed = searching  # no acceptable step: the row is at a (numerical) minimum or a kink
        moved = ~failed
        idx = act[moved]
        s_vec = Z_new[moved] - Z[idx]
        y_vec = g_new[moved] - g[idx]
        sy = np.einsum("kp,kp->k", s_vec, y_vec)
        df = f[idx] - f_new[moved]
        Z[idx], g[idx] = Z_new[moved], g_new[moved]
        f_old = f[idx].copy()
        f[idx] = f_new[moved]
        good = sy > 1e-16 * np.maximum(1.0, np.einsum("kp,kp->k", y_vec, y_vec))
        gi = idx[good]
        for H, new in ((S, s_vec[good]), (Y, y_vec[good]), (rho, 1.0 / sy[good])):
            H[gi, 1:] = H[gi, :-1]  # the oldest pair drops out
            H[gi, 0] = new
        n_hist[gi] += 1
        n_iter[act] += 1
        small = df <= ftol * np.maximum(np.maximum(np.abs(f_old), np.abs(f[idx])), 1e-300)
        stall[idx] = np.where(small, stall[idx] + 1, 0)
        gmax_i = np.abs(g[idx]).max(axis=1)
        conv = (gmax_i < gtol) | (stall[idx] >= 2)
        converged[idx[conv]] = True
        done[idx[conv]] = True
        # a failed line search means no decrease is possible along the best direction: a minimum to
        # numerical precision if the gradient is small relative to the objective, otherwise a stuck row
        fidx = act[failed]
        if fidx.size:
            n_hist[fidx] = 0  # first retry with steepest descent
            stuck = stall[fidx] >= 1
            # a second failed line search ends the row; it counts as converged only where the gradient is
            # small (a minimum, or a Huber kink at one), never on the failure alone
            flat = np.abs(g[fidx]).max(axis=1) < max(gtol, 1e-5)
            converged[fidx[stuck & flat]] = True
            done[fidx[stuck]] = True
            stall[fidx] += 1
    gmax = np.abs(g).max(axis=1)
    return BatchResult(Z=Z, f=f, gnorm=gmax, converged=converged & np.isfinite(f), n_iter=n_iter)


@dataclass
class Optimum:
    z: np.ndarray
    f: float
    converged: bool
    message: str
    n_iter: int
    gnorm: float
    n_starts: int
    n_starts_converged: int
    n_starts_at_best: int  # starts that ended within 1e-6 (relative) of the best objective
    candidates: np.ndarray = field(repr=False, default=None)  # distinct good local optima (internal)


def polish(objective: Objective, z0: np.ndarray, weights: np.ndarray | None = None, max_iter: int = 15000):
    """scipy L-BFGS-B from z0: the reference optimiser whose success flag the fit reports."""

    def fun(z):
        f, g = objective(z[None, :], None if weights is None else weights[None, :])
        return float(f[0]), g[0]

    return minimize(fun, z0, jac=True, method="L-BFGS-B",
                    options={"maxiter": max_iter, "maxfun": 2 * max_iter, "ftol": 1e-15, "gtol": 1e-10,
                             "maxcor": 20})


def process_pool(n_jobs: int):
    """A pool of n_jobs worker processes (forked where the platform allows: no re-import, fast start)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    return ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx)


def _run_batch(objective, Z0, W, max_iter):
    return lbfgs_batched(objective, Z0, W, max_iter=max_iter)


def multistart(objective: Objective, grid: np.ndarray, weights: np.ndarray | None = None, *,
               max_iter: int = 500, chunk: int = 4500, n_polish: int = 3, n_jobs: int = 1) -> Optimum:
    """L-BFGS from every row of `grid` (batched), then scipy polishing of the best few; keep the best."""
    W = None if weights is None or np.all(weights == 1) else weights
    if n_jobs > 1 and grid.shape[0] >= 64:
        chunk = -(-grid.shape[0] // n_jobs)
    pieces = [grid[lo:lo + chunk] for lo in range(0, grid.shape[0], chunk)]

    def args(piece):
        return None if W is None else np.broadcast_to(W, (piece.shape[0], W.shape[0]))

    if n_jobs > 1 and len(pieces) > 1:
        with process_pool(n_jobs) as pool:
            results = list(pool.map(_run_batch, [objective] * len(pieces), pieces, [args(p) for p in pieces],
                                    [max_iter] * len(pieces)))
    else:
        results = [lbfgs_batched(objective, p, args(p), max_iter=max_iter) for p in pieces]
    Z = np.concatenate([r.Z for r in results])
    f = np.concatenate([r.f for r in results])
    conv = np.concatenate([r.converged for r in results])
    order = np.argsort(np.where(np.isfinite(f), f, np.inf))
    # distinct candidates: skip rows whose parameters nearly equal an already chosen one
    cands = []
    for i in order:
        if not np.isfinite(f[i]):
            break
        if all(np.max(np.abs(Z[i] - Z[j])) > 1e-3 for j in cands):
            cands.append(i)
        if len(cands) >= max(n_polish, 5):
            break
    if not cands:
        return Optimum(z=grid[0], f=np.inf, converged=False, message="objective not finite at any start",
                       n_iter=0, gnorm=np.inf, n_starts=grid.shape[0], n_starts_converged=0, n_starts_at_best=0,
                       candidates=grid[:1])
    best = None
    for i in cands[:n_polish]:
        r = polish(objective, Z[i], weights, max_iter=max(max_iter * 10, 50) if max_iter >= 50 else max_iter)
        if best is None or r.fun < best.fun:
            best = r
    if f[cands[0]] < best.fun:  # polishing can only help, but never trust it blindly
        zb, fb = Z[cands[0]], float(f[cands[0]])
        ok, msg, nit = bool(conv[cands[0]]), "batched L-BFGS (scipy polish did not improve)", 0
    else:
        zb, fb, ok, msg, nit = best.x, float(best.fun), bool(best.success), str(best.message), int(best.nit)
    _, gb = objective(zb[None, :], None if weights is None else weights[None, :])
    gnorm = float(np.abs(gb).max())
    if not ok and "ABNORMAL" in msg and gnorm < 1e-5:
        # scipy's line search gives up at the kinks of the Huber loss although the gradient is ~0 there
        ok, msg = True, f"line search stopped at a Huber kink with gradient {gnorm:.1e} (a minimum)"
    at_best = int(np.sum(f <= fb + 1e-6 * max(abs(fb), 1e-12)))
    return Optimum(z=zb, f=fb, converged=ok, message=msg, n_iter=nit, gnorm=gnorm,
                   n_starts=grid.shape[0], n_starts_converged=int(conv.sum()), n_starts_at_best=at_best,
                   candidates=Z[cands])
