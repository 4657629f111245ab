"""The functional forms of the scaling laws, each a small class with one job: map inputs to log predictions.

Every form predicts the *logarithm* of its response (the loss, or B_crit), because the fits minimise a Huber
loss on log residuals (Hoffmann et al. 2022). Each form has two parameter vectors:

- natural parameters, the ones the paper prints (N_c, alpha_N, A, E, ...), in `param_names` order;
- internal parameters, the ones the optimiser moves. Positive scales live in log space, and where a law is a
  power (N_c/N)^alpha the internal pair is (alpha, alpha*log N_c), which makes log L linear in the parameters
  and the fit well conditioned (log N_c alone is ~30 and strongly coupled to alpha).

`log_predict(Z, X, jac=True)` works on a batch of K internal parameter vectors at once (Z has shape (K, P)), so
a whole grid of starting points, or thousands of bootstrap resamples, are evaluated in one numpy expression.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from string import Template
from typing import Callable

import numpy as np

from scalinglab.errors import FitError

_LOG_MAX = 700.0  # exp() of more than this overflows a float64


def _exp(x):
    return np.exp(np.clip(x, -_LOG_MAX, _LOG_MAX))


def _lse2(u, v):
    """log(exp(u) + exp(v)) and the softmax weight of u, stable for large arguments."""
    m = np.maximum(u, v)
    eu, ev = np.exp(u - m), np.exp(v - m)
    s = eu + ev
    return m + np.log(s), eu / s


def fmt_number(x: float, digits: int = 4) -> str:
    """A number the way papers print it: 0.076, 1.817, 482.0, 8.8e13."""
    if x is None or not np.isfinite(x):
        return str(x)
    ax = abs(x)
    if ax != 0 and (ax >= 1e5 or ax < 1e-3):
        mant, exp = f"{x:.{digits - 1}e}".split("e")
        mant = mant.rstrip("0").rstrip(".")
        return f"{mant}e{int(exp)}"
    return f"{x:.{digits}g}"


def fmt_latex(x: float, digits: int = 4) -> str:
    s = fmt_number(x, digits)
    if "e" in s:
        mant, exp = s.split("e")
        return rf"{mant} \times 10^{{{exp}}}"
    return s


class _Symbols(dict):
    """Template values of a symbolic formula: each name stands for itself unless mapped; with `greek`, a name
    that begins with a Greek letter's name gets LaTeX's backslash (alpha_N -> \\alpha_N)."""

    def __init__(self, symbols: dict, greek: bool = False):
        super().__init__(symbols)
        self.greek = greek

    def __missing__(self, name: str) -> str:
        return "\\" + name if self.greek and _GREEK.match(name) else name


_GREEK = re.compile(r"(alpha|beta|eta)(_|$)")


class Form:
    """Base class. Subclasses set the class attributes (the formula's templates among them) and implement the four
    methods below."""

    name: str = ""
    title: str = ""
    inputs: tuple[str, ...] = ()  # variables read from the data: N, D, C, S or L
    response: str = "L"  # what is predicted: L (loss) or B_crit
    param_names: tuple[str, ...] = ()
    internal_names: tuple[str, ...] = ()
    symbols: dict[str, str] = {}  # how each input prints (C prints as C_min in L(C_min))

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    # -- to implement ---------------------------------------------------------------------------------
    def log_predict(self, Z: np.ndarray, X: dict[str, np.ndarray], jac: bool = False):
        """log prediction (K, n) for K internal parameter rows; with jac also d/dZ_j for each j, a tuple of P
        pairs (array (K, n), vector (n,) or None): the derivative is array * vector (the vector factored out so
        the gradient can use a matrix-vector product)."""
        raise NotImplementedError

    def to_natural(self, Z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def to_internal(self, theta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def start_grid(self, X: dict[str, np.ndarray], logy: np.ndarray) -> np.ndarray:
        """Internal starting points (G, P), spread around values the data suggests."""
        raise NotImplementedError

    # -- identifiability: what laws/fit.py's check needs to know of a form (the rule is stated there) -------
    own_params: dict[str, int] = {}  # input -> free parameters that act through that input's term alone
    free_level: bool = False  # a free additive constant (E, L_inf) shares the level of every term
    additive: bool = False  # a sum of one-input terms (E + f(N) + g(D)): the n_N + n_D - 1 bound applies
    scale_with: dict[str, str] = {}  # an input rescaled by another's factor (data_constrained: U with D)

    def design_values(self, X: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The values of each input in `own_params` as the law sees them (data_constrained: D' for D)."""
        return {v: np.asarray(X[v], dtype=float) for v in self.own_params}

    def term_shares(self, Z: np.ndarray, X: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each free additive term's share of the prediction, {term: (K, n) array}; {} for a single term."""
        return {}

    def rescale(self, Z: np.ndarray, log_s: dict[str, float]) -> np.ndarray:
        """Internal rows fitted to inputs x / s -> the same law for the inputs x (log_s: input -> log s). Every
        input of a form enters as a power of x, so a rescaling moves only the scale coordinates."""
        raise NotImplementedError

    # -- the formula: a template over the parameter names, filled with numbers or with the symbols -------
    text_template: str = ""  # string.Template: "L(N, S_min) = ($N_c/N)^$alpha_N + ($S_c/S_min)^$alpha_S"
    latex_template: str = ""
    text_note: str = ""  # appended to the symbolic text formula (what a derived input means)
    text_symbols: dict[str, str] = {}  # how a name prints in the symbolic text (default: the name)
    latex_symbols: dict[str, str] = {}  # how a name prints in symbolic LaTeX (default: the name, Greek ones as \alpha)

    def _values(self, params: dict, fmt) -> dict:
        """The numbers the templates print: every parameter, formatted by `fmt` (a form adds derived ones)."""
        return {k: fmt(v) for k, v in params.items()}

    def text(self, params: dict | None = None) -> str:
        if params is None:
            return Template(self.text_template).substitute(_Symbols(self.text_symbols)) + self.text_note
        return Template(self.text_template).substitute(self._values(params, fmt_number))

    def latex(self, params: dict | None = None) -> str:
        if params is None:
            return Template(self.latex_template).substitute(_Symbols(self.latex_symbols, greek=True))
        return Template(self.latex_template).substitute(self._values(params, fmt_latex))

    # -- shared ---------------------------------------------------------------------------------------
    def sym(self, var: str) -> str:
        return self.symbols.get(var, var)

    def theta(self, params: dict) -> np.ndarray:
        return np.array([float(params[p]) for p in self.param_names])

    def predict(self, params: dict, X: dict[str, np.ndarray]) -> np.ndarray:
        """Natural-parameter prediction of the response (not its log) at inputs X."""
        Z = self.to_internal(self.theta(params)[None, :])
        X = {k: np.asarray(X[k], dtype=float) for k in self.inputs}
        return np.exp(self.log_predict(Z, X)[0])

    def __repr__(self):
        return f"<form {self.name}: {self.text()}>"


# ------------------------------------------------------------------------------------------------ power laws


class PowerLaw(Form):
    """L(x) = (x_c / x)^alpha, optionally + L_inf: Kaplan's L(N), L(D), L(C), L(C_min), and the learning curve.

    Internal parameters: (alpha, c = alpha log x_c) and, with the irreducible term, e = log L_inf first.
    """

    def __init__(self, name, var, scale, exponent, title, irreducible=False, symbol=None):
        self.name, self.title, self.var = name, title, var
        self.inputs = (var,)
        self.symbols = {var: symbol or var}
        self.scale, self.exponent = scale, exponent
        self.irreducible = irreducible
        self.param_names = ((("L_inf",) if irreducible else ()) + (scale, exponent))
        self.internal_names = ((("log_L_inf",) if irreducible else ()) + ("alpha", "alpha_log_scale"))

    def log_predict(self, Z, X, jac=False):
        lx = np.log(X[self.var])[None, :]
        off = 1 if self.irreducible else 0
        alpha, c = Z[:, off, None], Z[:, off + 1, None]
        power = c - alpha * lx
        if not self.irreducible:
            if not jac:
                return power
            return power, ((np.ones_like(power), -lx[0]), (np.ones_like(power), None))
        e = Z[:, 0, None]
        lp, p_e = _lse2(np.broadcast_to(e, power.shape), power)
        if not jac:
            return lp
        q = 1.0 - p_e
        return lp, ((p_e, None), (q, -lx[0]), (q, None))

    def to_natural(self, Z):
        Z = np.atleast_2d(Z)
        off = 1 if self.irreducible else 0
        alpha, c = Z[:, off], Z[:, off + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = _exp(c / alpha)
        cols = ([_exp(Z[:, 0])] if self.irreducible else []) + [scale, alpha]
        return np.stack(cols, axis=1)

    def to_internal(self, theta):
        theta = np.atleast_2d(theta)
        off = 1 if self.irreducible else 0
        scale, alpha = theta[:, off], theta[:, off + 1]
        cols = ([np.log(theta[:, 0])] if self.irreducible else []) + [alpha, alpha * np.log(scale)]
        return np.stack(cols, axis=1)

    @property
    def own_params(self):
        return {self.var: 2}  # the scale and the exponent

    @property
    def free_level(self):
        return self.irreducible

    def term_shares(self, Z, X):
        if not self.irreducible:
            return {}
        off_power = self.log_predict(Z, X) - np.atleast_2d(Z)[:, 0, None]  # log(1 + power/L_inf)
        p_e = np.exp(-off_power)
        return {"L_inf": p_e, f"({self.scale}/{self.sym(self.var)})^{self.exponent}": 1.0 - p_e}

    def rescale(self, Z, log_s):
        Z = np.array(np.atleast_2d(Z), dtype=float)
        off = 1 if self.irreducible else 0
        Z[:, off + 1] += Z[:, off] * log_s.get(self.var, 0.0)
        return Z

    def start_grid(self, X, logy):
        lx = np.log(X[self.var])
        alphas = [0.01, 0.03, 0.1, 0.3, 1.0]
        rows = []
        if not self.irreducible:
            for a in alphas:
                rows.append([a, np.mean(logy + a * lx)])
            return np.array(rows)
        ymin = np.exp(logy.min())
        for frac, a in itertools.product([0.1, 0.5, 0.8, 0.95], alphas):
            e = frac * ymin
            rest = np.log(np.maximum(np.exp(logy) - e, 1e-12))
            rows.append([math.log(e), a, np.mean(rest + a * lx)])
        return np.array(rows)

    def _parts(self, params, latex):
        v, x = self.sym(self.var), self.var
        scale_sym = f"{x}_c" if x != "C" or self.sym(x) == "C" else "C_c^min"
        if params is None:
            if latex:
                lead = r"L_\infty + " if self.irreducible else ""
                sc = {"C_c^min": r"C_c^{\min}"}.get(scale_sym, scale_sym)
                vv = {"C_min": r"C_{\min}"}.get(v, v)
                ex = r"\alpha_{" + self.exponent.split("_", 1)[1].replace("min", r"\min") + "}"
                return f"{lead}\\left(\\frac{{{sc}}}{{{vv}}}\\right)^{{{ex}}}"
            lead = "L_inf + " if self.irreducible else ""
            return f"{lead}({scale_sym}/{v})^{self.exponent}"
        f = fmt_latex if latex else fmt_number
        sc, ex = f(params[self.scale]), f(params[self.exponent])
        if latex:
            vv = {"C_min": r"C_{\min}"}.get(v, v)
            lead = f"{f(params['L_inf'])} + " if self.irreducible else ""
            return f"{lead}\\left(\\frac{{{sc}}}{{{vv}}}\\right)^{{{ex}}}"
        lead = f"{f(params['L_inf'])} + " if self.irreducible else ""
        return f"{lead}({sc} / {v})^{ex}"

    def text(self, params=None):
        return f"L({self.sym(self.var)}) = " + self._parts(params, latex=False)

    def latex(self, params=None):
        v = {"C_min": r"C_{\min}"}.get(self.sym(self.var), self.sym(self.var))
        return f"L({v}) = " + self._parts(params, latex=True)


# ------------------------------------------------------------------------------------------------ Chinchilla


def _lse3(e, t1, t2, jac, fast=True):
    """log(exp(e) + exp(t1) + exp(t2)) of (K, n) terms (e may be (K, 1)) and, with jac, the three softmax weights
    (each term's share of the sum: the derivative of the log-sum with respect to that term).

    fast=True (Chinchilla's kernel): plain exponentials where they cannot overflow or all underflow, the weights
    by one reciprocal; fast=False: always the max-shifted sum, the weights by division. The two agree to the last
    few bits, but those bits move a fit's L-BFGS path, so each form keeps the kernel its results were made with."""
    if fast and max(t1.max(), t2.max(), float(np.max(e))) < 600 and min(t1.min(), t2.min(), float(np.min(e))) > -600:
        w0 = np.exp(e)
        w1 = np.exp(t1)
        w2 = np.exp(t2)
        s = w1 + w2
        s += w0
        lp = np.log(s)
    else:  # stable log-sum-exp for far-off parameters
        t0 = np.broadcast_to(e, t1.shape)
        m = np.maximum(np.maximum(t0, t1), t2)
        w0, w1, w2 = np.exp(t0 - m), np.exp(t1 - m), np.exp(t2 - m)
        s = w0 + w1 + w2
        lp = m + np.log(s)
    if not jac:
        return lp, None
    if not fast:
        return lp, (w0 / s, w1 / s, w2 / s)
    s = 1.0 / s
    return lp, (w0 * s, w1 * s, w2 * s)


class ChinchillaFamily(Form):
    """The structure every member of the Chinchilla family shares: L = E + T1 + T2, an irreducible loss plus two
    power-law terms, fitted as log L = LSE(e, t1, t2) with the positive scales in log space. A member says only
    what differs: how it computes t1 and t2 from its internal parameters (`_terms`), their derivatives
    (`_jac`), which natural parameters are logs inside (`_logs`), its grids and its formula."""

    family = "chinchilla"
    _logs: list = [0, 1, 2]  # natural parameters whose internal coordinate is their log
    _fast: bool = True  # which kernel of _lse3 (overtrain and shared-E: the always-stable one)

    def _terms(self, Z, X):
        """(e (K, 1), t1 (K, n), t2 (K, n), what `_jac` needs) for full internal rows Z."""
        raise NotImplementedError

    def _jac(self, p, aux) -> tuple:
        """d log L / d Z_j for each internal coordinate, from the softmax weights p = (p0, p1, p2) of the terms."""
        raise NotImplementedError

    def _full(self, Z):
        """The optimiser's internal rows -> all internal coordinates (a restricted member fills in the rest)."""
        return np.atleast_2d(Z)

    def _reduce(self, F):
        """All internal coordinates -> the ones the optimiser moves."""
        return F

    def log_predict(self, Z, X, jac=False):
        e, t1, t2, aux = self._terms(self._full(Z), X)
        lp, p = _lse3(e, t1, t2, jac, self._fast)
        return lp if not jac else (lp, self._jac(p, aux))

    free_level = True
    additive = True
    term_names = ("E", "A/N^alpha", "B/D^beta")  # the three terms of L, for the shares below

    def term_shares(self, Z, X):
        e, t1, t2, _ = self._terms(self._full(Z), X)
        _, p = _lse3(e, t1, t2, True, fast=False)
        shares = dict(zip(self.term_names, p))
        if not self.free_level:  # a fixed E is not a parameter the data must pin
            shares.pop(self.term_names[0])
        return shares

    def _shift(self, F, log_s):
        """Full internal rows fitted to inputs x / s -> the rows for x (see Form.rescale)."""
        raise NotImplementedError

    def rescale(self, Z, log_s):
        return self._reduce(self._shift(np.array(self._full(Z), dtype=float), log_s))

    def to_natural(self, Z):
        T = np.array(self._full(Z), dtype=float)
        T[:, self._logs] = _exp(T[:, self._logs])
        return T

    def to_internal(self, theta):
        T = np.array(np.atleast_2d(theta), dtype=float)
        T[:, self._logs] = np.log(T[:, self._logs])
        return self._reduce(T)


class Chinchilla(ChinchillaFamily):
    """Hoffmann et al. 2022, eq. 2: L(N, D) = E + A / N^alpha + B / D^beta.

    Internal parameters follow their recipe: (a, b, e, alpha, beta) with A = exp(a), B = exp(b), E = exp(e),
    and log L = LSE(a - alpha log N, b - beta log D, e).

    Two restrictions of the same law, each with fewer free parameters (the natural parameters stay the five
    above, so every member of the family predicts and plans alike):

    - `tied=True`, exponents tied, alpha = beta (form `chinchilla_tied`). Gadre et al. 2024 (arXiv 2403.08540,
      eq. 4) tie them so that at a fixed tokens-per-parameter ratio the reducible loss is a power law in compute,
      and find that this extrapolates better from small over-trained runs;
    - `fix_e=E0`, the irreducible loss fixed at E0 instead of fitted (Hoffmann et al.'s E is the most weakly
      determined parameter when the runs do not approach it: Besiroglu et al. 2024, Table 1).
    """

    name = "chinchilla"
    tied_name = "chinchilla_tied"  # the form's name with alpha = beta
    title = "Chinchilla L(N, D)"
    inputs = ("N", "D")
    param_names = ("E", "A", "B", "alpha", "beta")
    internal_names = ("e", "a", "b", "alpha", "beta")
    text_template = "L(N, D) = $E + $A/N^$alpha + $B/D^$beta"
    latex_template = r"L(N, D) = $E + \frac{$A}{N^{$alpha}} + \frac{$B}{D^{$beta}}"

    def __init__(self, tied: bool = False, fix_e: float | None = None):
        self.tied = bool(tied)
        self.fix_e = None if fix_e is None else float(fix_e)
        if self.fix_e is not None and not (np.isfinite(self.fix_e) and self.fix_e > 0):
            raise FitError(f"a fixed irreducible loss must be a positive number, got {fix_e!r}")
        if self.tied:
            self.name, self.title = self.tied_name, self.title + ", alpha = beta"
        if self.fix_e is not None:
            self.title += f", E fixed at {fmt_number(self.fix_e)}"
        # which of the five full internal coordinates the optimiser moves
        self._free = [i for i in range(5) if not (i == 0 and self.fix_e is not None) and not (i == 4 and self.tied)]
        self.internal_names = tuple(Chinchilla.internal_names[i] for i in self._free)

    @property
    def text_note(self) -> str:
        tail = "; alpha = beta" if self.tied else ""
        return tail + (f"; E = {fmt_number(self.fix_e)} fixed" if self.fix_e is not None else "")

    @property
    def options(self) -> dict:
        """What, beyond the name, rebuilds this form (to_dict / from_dict)."""
        return {} if self.fix_e is None else {"fix_e": self.fix_e}

    @property
    def n_free(self) -> int:
        return len(self._free)

    def _full(self, Z):
        """Reduced internal rows (K, n_free) -> the full five coordinates (K, 5)."""
        Z = np.atleast_2d(Z)
        if len(self._free) == 5:
            return Z
        F = np.empty((Z.shape[0], 5))
        F[:, self._free] = Z
        if self.fix_e is not None:
            F[:, 0] = math.log(self.fix_e)
        if self.tied:
            F[:, 4] = F[:, 3]
        return F

    def _reduce(self, F):
        return F[:, self._free]

    @property
    def own_params(self):
        k = 1 if self.tied else 2  # A (and alpha unless tied) act through N alone; B (and beta) through D
        return {"N": k, "D": k}

    @property
    def free_level(self):
        return self.fix_e is None

    def _shift(self, F, log_s):
        F[:, 1] += F[:, 3] * log_s.get("N", 0.0)
        F[:, 2] += F[:, 4] * log_s.get("D", 0.0)
        return F

    def _transform(self, X):
        """(log N, log D) the law sees; the data-constrained form replaces D by its effective value."""
        return np.log(X["N"]), np.log(X["D"])

    def _terms(self, Z, X):
        ln, ld = self._transform(X)
        # a - alpha log N as a (K, 2) @ (2, n) product: much faster than numpy's broadcasting outer product
        t1 = np.ascontiguousarray(Z[:, [1, 3]]) @ np.vstack([np.ones_like(ln), -ln])
        t2 = np.ascontiguousarray(Z[:, [2, 4]]) @ np.vstack([np.ones_like(ld), -ld])
        return Z[:, 0, None], t1, t2, (ln, ld)

    def _jac(self, p, aux):
        (p0, p1, p2), (ln, ld) = p, aux
        full = [(p0, None), (p1, None), (p2, None), (p1, -ln), (p2, -ld)]
        if self.tied:  # d/d alpha of both terms: no longer one array times one vector
            full[3] = (-(p1 * ln + p2 * ld), None)
        return tuple(full[i] for i in self._free)

    def start_grid(self, X=None, logy=None):
        """The published grid: alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25}
        (restricted to the free coordinates)."""
        exps = np.arange(0.0, 2.01, 0.5)
        es = np.arange(-1.0, 1.01, 0.5)
        abs_ = np.arange(0.0, 25.01, 5.0)
        g = np.array(list(itertools.product(es, abs_, abs_, exps, exps)))
        return self._restrict(g)

    def quick_grid(self, X=None, logy=None):
        """A coarse grid (72 starts for the full form) that finds the published grid's optimum on the public
        Chinchilla points; used where many fits are needed (nested backtests)."""
        g = np.array(list(itertools.product([0.0, 0.5], [2.0, 6.0, 12.0], [2.0, 6.0, 12.0], [0.3, 0.6],
                                            [0.3, 0.6])))
        return self._restrict(g)

    def _restrict(self, g):
        """Full-coordinate starting rows -> the free coordinates, duplicates removed (the full form: unchanged)."""
        if len(self._free) == 5:
            return g
        return np.unique(g[:, self._free], axis=0)


class DataConstrained(Chinchilla):
    """Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models", arXiv 2305.16264, eqs. 5-6):
    L(N, D, U) = E + A / N^alpha + B / D'^beta, where U unique tokens are seen R = D/U - 1 extra times and
    D' = U + U R* (1 - exp(-R / R*)) is the effective data: repeated tokens are worth less and less, with the
    paper's fitted decay constant R* (scalinglab.published.MUENNIGHOFF2023). Without repetition (D <= U),
    D' = D and the law is Chinchilla's.

    Muennighoff et al. also shrink N to an effective N' for models larger than the unique data supports
    (R*_N ~ 5.3); that part depends on the compute-optimal size of the unique data and is not modelled here:
    the form is for runs whose loss is limited by repeated data.
    """

    name = tied_name = "data_constrained"
    title = "data-constrained L(N, D, U) (Muennighoff et al. 2023)"
    inputs = ("N", "D", "U")
    text_template = "L(N, D, U) = $E + $A/N^$alpha + $B/D'^$beta"
    latex_template = r"L(N, D, U) = $E + \frac{$A}{N^{$alpha}} + \frac{$B}{D'^{$beta}}"

    @property
    def text_note(self) -> str:
        return ", D' = U + U R*(1 - exp(-(D/U - 1)/R*))" + super().text_note

    @staticmethod
    def effective_tokens(D, U):
        from scalinglab.published import MUENNIGHOFF2023

        r_star = MUENNIGHOFF2023["R_star_D"]
        D, U = np.asarray(D, float), np.asarray(U, float)
        R = np.maximum(D / U - 1.0, 0.0)
        return np.where(D > U, U + U * r_star * (1.0 - np.exp(-R / r_star)), D)

    def _transform(self, X):
        return np.log(X["N"]), np.log(self.effective_tokens(X["D"], X["U"]))

    def design_values(self, X):
        return {"N": np.asarray(X["N"], float), "D'": self.effective_tokens(X["D"], X["U"])}

    scale_with = {"U": "D"}  # D' depends on D/U: both are rescaled by one factor

    @property
    def own_params(self):
        k = 1 if self.tied else 2
        return {"N": k, "D'": k}


class SharedE(ChinchillaFamily):
    """Chinchilla's law fitted jointly to several groups (datasets, tokenizers) with one irreducible loss E shared
    by all and A, B, alpha, beta per group: L_g(N, D) = E + A_g / N^alpha_g + B_g / D^beta_g. Hoffmann et al.
    2022 (eq. 2) read E as the entropy of natural text; sharing it lets the groups with runs near their floor
    pin it down for the others. Input G: the group's index (0, 1, ...); `groups` keeps the groups' names.

    Internal parameters: (e, a_0, b_0, alpha_0, beta_0, a_1, ...), log L = LSE(e, a_g - alpha_g log N,
    b_g - beta_g log D).
    """

    name = "chinchilla_shared_e"
    family = "chinchilla_shared_e"
    inputs = ("N", "D", "G")
    _fast = False

    def __init__(self, groups=("0",)):
        self.groups = [str(g) for g in groups]
        k = len(self.groups)
        self.title = f"Chinchilla L(N, D) with E shared by {k} groups"
        self.param_names = ("E",) + tuple(f"{p}[{g}]" for g in self.groups for p in ("A", "B", "alpha", "beta"))
        self.internal_names = ("e",) + tuple(f"{p}[{g}]" for g in self.groups for p in ("a", "b", "alpha", "beta"))
        self._logs = [0] + [1 + 4 * j + i for j in range(k) for i in (0, 1)]  # E, and each group's A and B

    @property
    def options(self) -> dict:
        return {"groups": list(self.groups)}

    own_params = {"N": 2, "D": 2}  # per group: A_g and alpha_g act through N alone, B_g and beta_g through D
    free_level = False  # E is shared by the groups: within one group it is no free level of its own

    def term_shares(self, Z, X):
        e, t1, t2, (_, _, g) = self._terms(self._full(Z), X)
        _, (p0, p1, p2) = _lse3(e, t1, t2, True, fast=False)
        out = {"E": p0}
        for j, name in enumerate(self.groups):
            one = (g == j)
            out[f"A[{name}]/N^alpha[{name}]"] = p1 * one
            out[f"B[{name}]/D^beta[{name}]"] = p2 * one
        return out

    def _shift(self, F, log_s):
        for j in range(len(self.groups)):
            F[:, 1 + 4 * j] += F[:, 3 + 4 * j] * log_s.get("N", 0.0)
            F[:, 2 + 4 * j] += F[:, 4 + 4 * j] * log_s.get("D", 0.0)
        return F

    def group_params(self, params: dict, group) -> dict:
        """One group's law in Chinchilla's five parameters."""
        g = str(group)
        return {"E": params["E"], **{p: params[f"{p}[{g}]"] for p in ("A", "B", "alpha", "beta")}}

    def _terms(self, Z, X):
        ln, ld = np.log(X["N"]), np.log(X["D"])
        g = np.asarray(X["G"]).astype(int)
        a, b, al, be = (Z[:, 1 + i::4][:, g] for i in range(4))
        return Z[:, 0, None], a - al * ln[None, :], b - be * ld[None, :], (ln, ld, g)

    def _jac(self, p, aux):
        (p0, p1, p2), (ln, ld, g) = p, aux
        out = [(p0, None)]
        for j in range(len(self.groups)):
            one = (g == j).astype(float)
            out += [(p1, one), (p2, one), (p1, -ln * one), (p2, -ld * one)]
        return tuple(out)

    def start_grid(self, X=None, logy=None):
        """Chinchilla's coarse grid with every group starting from the same (a, b, alpha, beta)."""
        g = Chinchilla().quick_grid()
        return np.hstack([g[:, :1]] + [g[:, 1:]] * len(self.groups))

    quick_grid = start_grid

    def text(self, params=None):
        if params is None:
            return "L_g(N, D) = E + A_g/N^alpha_g + B_g/D^beta_g (E shared)"
        return "; ".join(f"[{g}] " + Chinchilla().text(self.group_params(params, g)) for g in self.groups)

    def latex(self, params=None):
        if params is None:
            return r"L_g(N, D) = E + \frac{A_g}{N^{\alpha_g}} + \frac{B_g}{D^{\beta_g}}"
        return r"; \quad ".join(Chinchilla().latex(self.group_params(params, g)) for g in self.groups)


class OverTraining(ChinchillaFamily):
    """Gadre et al. 2024 ("Language models scale reliably with over-training and on downstream tasks",
    arXiv 2403.08540, eq. 4): L(C, M) = E + (a M^eta + b M^-eta) C^-eta with C = 6 N D and M = D / N, the
    tokens-per-parameter ratio. At a fixed M the reducible loss is a power law in compute with one exponent
    eta for every ratio. It is Chinchilla's law with alpha = beta = 2 eta, A = a 6^-eta, B = b 6^-eta, written in
    the variables an over-training study varies; its predictions equal `chinchilla_tied`'s at the same optimum.

    Internal parameters (e, log a, log b, eta): log L = LSE(e, log a - eta log C + eta log M,
    log b - eta log C - eta log M).
    """

    name = "overtrain"
    title = "over-training L(C, M) (Gadre et al. 2024)"
    family = "overtrain"
    inputs = ("N", "D")
    param_names = ("E", "a", "b", "eta")
    internal_names = ("e", "log_a", "log_b", "eta")
    _fast = False
    text_template = "L(C, M) = $E + ($a M^$eta + $b M^-$eta) C^-$eta"
    text_note = ", C = 6ND, M = D/N"
    latex_template = r"L(C, M) = $E + \left($a M^{$eta} + $b M^{-$eta}\right) C^{-$eta}"

    def _terms(self, Z, X):
        ln, ld = np.log(X["N"]), np.log(X["D"])
        lc, lm = math.log(6.0) + ln + ld, ld - ln
        x1, x2 = lc - lm, lc + lm  # log C -/+ log M, the powers of the two terms divided by -eta
        eta = Z[:, 3, None]
        return Z[:, 0, None], Z[:, 1, None] - eta * x1[None, :], Z[:, 2, None] - eta * x2[None, :], (x1, x2)

    def _jac(self, p, aux):
        (p0, p1, p2), (x1, x2) = p, aux
        return (p0, None), (p1, None), (p2, None), (-(p1 * x1 + p2 * x2), None)

    own_params = {"N": 1, "D": 1}  # the law is chinchilla_tied's: a acts through N alone, b through D
    term_names = ("E", "a M^eta C^-eta", "b M^-eta C^-eta")

    def _shift(self, F, log_s):  # log C -/+ log M = log 6 + 2 log N (resp. 2 log D)
        F[:, 1] += 2.0 * F[:, 3] * log_s.get("N", 0.0)
        F[:, 2] += 2.0 * F[:, 3] * log_s.get("D", 0.0)
        return F

    def chinchilla_params(self, params: dict) -> dict:
        """The same law in Chinchilla's parameters (for planning)."""
        eta = params["eta"]
        return {"E": params["E"], "A": params["a"] * 6.0 ** -eta, "B": params["b"] * 6.0 ** -eta,
                "alpha": 2 * eta, "beta": 2 * eta}

    def start_grid(self, X=None, logy=None):
        # Chinchilla's published grid restricted to alpha = beta, in these coordinates (eta = alpha / 2)
        rows = [[e, a + eta * math.log(6.0), b + eta * math.log(6.0), eta]
                for e, a, b, alpha in itertools.product(np.arange(-1.0, 1.01, 0.5), np.arange(0.0, 25.01, 5.0),
                                                        np.arange(0.0, 25.01, 5.0), np.arange(0.25, 2.01, 0.25))
                for eta in [alpha / 2]]
        return np.array(rows)

    def quick_grid(self, X=None, logy=None):
        rows = [[e, a + eta * math.log(6.0), b + eta * math.log(6.0), eta]
                for e, a, b, eta in itertools.product([0.0, 0.5], [2.0, 6.0, 12.0], [2.0, 6.0, 12.0], [0.15, 0.3])]
        return np.array(rows)


# ------------------------------------------------------------------------------------------------ Kaplan joint


class KaplanND(Form):
    """Kaplan et al. 2020, eq. 1.5: L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D.

    Internal parameters (alpha_D, rho = alpha_N/alpha_D, k = rho log N_c, log D_c):
    log L = alpha_D * LSE(k - rho log N, log D_c - log D).
    """

    name = "kaplan_nd"
    title = "Kaplan L(N, D), eq. 1.5"
    inputs = ("N", "D")
    param_names = ("N_c", "D_c", "alpha_N", "alpha_D")
    internal_names = ("alpha_D", "rho", "rho_log_N_c", "log_D_c")
    text_template = "L(N, D) = [($N_c/N)^$ratio + $D_c/D]^$alpha_D"
    latex_template = (r"L(N, D) = \left[\left(\frac{$N_c}{N}\right)^{$ratio} + \frac{$D_c}{D}"
                      r"\right]^{$alpha_D}")
    text_symbols = {"ratio": "(alpha_N/alpha_D)"}
    latex_symbols = {"ratio": r"\frac{\alpha_N}{\alpha_D}"}

    def log_predict(self, Z, X, jac=False):
        ln, ld = np.log(X["N"])[None, :], np.log(X["D"])[None, :]
        ad, rho, k, dc = (Z[:, i, None] for i in range(4))
        s, p = _lse2(k - rho * ln, dc - ld)
        lp = ad * s
        if not jac:
            return lp
        adp = ad * p
        return lp, ((s, None), (adp, -ln[0]), (adp, None), (ad * (1.0 - p), None))

    def to_natural(self, Z):
        Z = np.atleast_2d(Z)
        ad, rho, k, dc = Z.T
        with np.errstate(divide="ignore", invalid="ignore"):
            nc = _exp(k / rho)
        return np.stack([nc, _exp(dc), rho * ad, ad], axis=1)

    def to_internal(self, theta):
        theta = np.atleast_2d(theta)
        nc, dc, an, ad = theta.T
        rho = an / ad
        return np.stack([ad, rho, rho * np.log(nc), np.log(dc)], axis=1)

    own_params = {"N": 2, "D": 1}  # N_c and alpha_N act through N alone, D_c through D (alpha_D is shared)

    def term_shares(self, Z, X):
        ln, ld = np.log(X["N"])[None, :], np.log(X["D"])[None, :]
        Z = np.atleast_2d(Z)
        _, p = _lse2(Z[:, 2, None] - Z[:, 1, None] * ln, Z[:, 3, None] - ld)
        return {"(N_c/N)^(alpha_N/alpha_D)": p, "D_c/D": 1.0 - p}

    def rescale(self, Z, log_s):
        Z = np.array(np.atleast_2d(Z), dtype=float)
        Z[:, 2] += Z[:, 1] * log_s.get("N", 0.0)
        Z[:, 3] += log_s.get("D", 0.0)
        return Z

    def start_grid(self, X, logy):
        mln, mld, mly = np.median(np.log(X["N"])), np.median(np.log(X["D"])), np.median(logy)
        rows = []
        for an, ad, on, od in itertools.product([0.04, 0.08, 0.16, 0.32], [0.05, 0.1, 0.2, 0.4],
                                                [-3.0, 0.0, 3.0], [-3.0, 0.0, 3.0]):
            nc = math.exp(mln + mly / an + on)
            dc = math.exp(mld + mly / ad + od)
            rows.append([nc, dc, an, ad])
        return self.to_internal(np.array(rows))

    def _values(self, params, fmt):
        return {**super()._values(params, fmt), "ratio": fmt(params["alpha_N"] / params["alpha_D"])}


class KaplanNS(Form):
    """Kaplan et al. 2020, eq. 1.6: L(N, S) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S.

    Internal parameters (a = alpha_N log N_c, alpha_N, b = alpha_S log S_c, alpha_S):
    log L = LSE(a - alpha_N log N, b - alpha_S log S).
    """

    name = "kaplan_ns"
    title = "Kaplan L(N, S_min), eq. 1.6"
    inputs = ("N", "S")
    symbols = {"S": "S_min"}
    param_names = ("N_c", "S_c", "alpha_N", "alpha_S")
    internal_names = ("alpha_N_log_N_c", "alpha_N", "alpha_S_log_S_c", "alpha_S")
    text_template = "L(N, S_min) = ($N_c/N)^$alpha_N + ($S_c/S_min)^$alpha_S"
    latex_template = (r"L(N, S_{\min}) = \left(\frac{$N_c}{N}\right)^{$alpha_N} + "
                      r"\left(\frac{$S_c}{S_{\min}}\right)^{$alpha_S}")

    def log_predict(self, Z, X, jac=False):
        ln, ls = np.log(X["N"])[None, :], np.log(X["S"])[None, :]
        a, an, b, as_ = (Z[:, i, None] for i in range(4))
        lp, p = _lse2(a - an * ln, b - as_ * ls)
        if not jac:
            return lp
        q = 1.0 - p
        return lp, ((p, None), (p, -ln[0]), (q, None), (q, -ls[0]))

    def to_natural(self, Z):
        Z = np.atleast_2d(Z)
        a, an, b, as_ = Z.T
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.stack([_exp(a / an), _exp(b / as_), an, as_], axis=1)

    def to_internal(self, theta):
        theta = np.atleast_2d(theta)
        nc, sc, an, as_ = theta.T
        return np.stack([an * np.log(nc), an, as_ * np.log(sc), as_], axis=1)

    own_params = {"N": 2, "S": 2}
    additive = True

    def term_shares(self, Z, X):
        Z = np.atleast_2d(Z)
        ln, ls = np.log(X["N"])[None, :], np.log(X["S"])[None, :]
        _, p = _lse2(Z[:, 0, None] - Z[:, 1, None] * ln, Z[:, 2, None] - Z[:, 3, None] * ls)
        return {"(N_c/N)^alpha_N": p, "(S_c/S_min)^alpha_S": 1.0 - p}

    def rescale(self, Z, log_s):
        Z = np.array(np.atleast_2d(Z), dtype=float)
        Z[:, 0] += Z[:, 1] * log_s.get("N", 0.0)
        Z[:, 2] += Z[:, 3] * log_s.get("S", 0.0)
        return Z

    def start_grid(self, X, logy):
        mln, mls = np.median(np.log(X["N"])), np.median(np.log(X["S"]))
        half = np.median(logy) - math.log(2.0)
        rows = []
        for an, as_, oa, ob in itertools.product([0.04, 0.08, 0.16, 0.32], [0.25, 0.5, 1.0, 2.0],
                                                 [-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]):
            rows.append([half + an * mln + oa, an, half + as_ * mls + ob, as_])
        return np.array(rows)


# ------------------------------------------------------------------------------------------------ B_crit(L)


class CriticalBatch(Form):
    """Kaplan et al. 2020, eq. 5.3: B_crit(L) = B* / L^(1/alpha_B). Internal (log B*, 1/alpha_B)."""

    name = "bcrit"
    title = "critical batch B_crit(L), eq. 5.3"
    inputs = ("L",)
    response = "B_crit"
    param_names = ("B_star", "alpha_B")
    internal_names = ("log_B_star", "inv_alpha_B")
    text_template = "B_crit(L) = $B_star/L^(1/$alpha_B)"
    latex_template = r"B_{\mathrm{crit}}(L) = \frac{$B_star}{L^{1/$alpha_B}}"
    text_symbols = {"B_star": "B*"}
    latex_symbols = {"B_star": "B_*"}

    def log_predict(self, Z, X, jac=False):
        ll = np.log(X["L"])[None, :]
        lp = Z[:, 0, None] - Z[:, 1, None] * ll
        if not jac:
            return lp
        one = np.ones_like(lp)
        return lp, ((one, None), (one, -ll[0]))

    def to_natural(self, Z):
        Z = np.atleast_2d(Z)
        with np.errstate(divide="ignore"):
            return np.stack([_exp(Z[:, 0]), 1.0 / Z[:, 1]], axis=1)

    def to_internal(self, theta):
        theta = np.atleast_2d(theta)
        return np.stack([np.log(theta[:, 0]), 1.0 / theta[:, 1]], axis=1)

    own_params = {"L": 2}

    def rescale(self, Z, log_s):
        Z = np.array(np.atleast_2d(Z), dtype=float)
        Z[:, 0] += Z[:, 1] * log_s.get("L", 0.0)
        return Z

    def start_grid(self, X, logy):
        ll = np.log(X["L"])
        return np.array([[np.mean(logy + g * ll), g] for g in (1.0, 3.0, 5.0, 10.0)])


# ------------------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class FormEntry:
    """One law form in the registry: how to build it, whether its irreducible loss E can be fixed, and its line in
    the command line's list of forms (its title, unless `help` says more)."""

    make: Callable[..., Form]  # make(irreducible=, fix_e=, groups=) -> Form
    fix_e: bool = False  # E of the chinchilla family: fit_law(fix_e=), `--fix-e`
    help: str | None = None


def _power(name, var, coef, expo, title, *, always_irreducible=False, symbol=None) -> Callable[..., Form]:
    def make(irreducible=False, **_):
        return PowerLaw(name, var, coef, expo, title, always_irreducible or irreducible, symbol=symbol)

    return make


# The law forms, in the order the command line lists them: the one table get_form, FORM_NAMES, FIX_E_FORMS and
# the command line's --form choices and help text read.
FORMS: dict[str, FormEntry] = {
    "chinchilla": FormEntry(lambda fix_e=None, **_: Chinchilla(fix_e=fix_e), fix_e=True),
    "chinchilla_tied": FormEntry(lambda fix_e=None, **_: Chinchilla(tied=True, fix_e=fix_e), fix_e=True),
    "chinchilla_shared_e": FormEntry(lambda groups=None, **_: SharedE(groups or ("0",)),
                                     help="Chinchilla L(N, D) with E shared across groups (--by)"),
    "overtrain": FormEntry(lambda **_: OverTraining()),
    "data_constrained": FormEntry(lambda fix_e=None, **_: DataConstrained(fix_e=fix_e), fix_e=True),
    "kaplan_n": FormEntry(_power("kaplan_n", "N", "N_c", "alpha_N", "Kaplan L(N)")),
    "kaplan_d": FormEntry(_power("kaplan_d", "D", "D_c", "alpha_D", "Kaplan L(D)")),
    "kaplan_c": FormEntry(_power("kaplan_c", "C", "C_c", "alpha_C", "Kaplan L(C), fixed batch")),
    "kaplan_cmin": FormEntry(_power("kaplan_cmin", "C", "C_c_min", "alpha_C_min", "Kaplan L(C_min)",
                                    symbol="C_min")),
    "kaplan_nd": FormEntry(lambda **_: KaplanND()),
    "kaplan_ns": FormEntry(lambda **_: KaplanNS()),
    "bcrit": FormEntry(lambda **_: CriticalBatch()),
    "learning_curve": FormEntry(_power("learning_curve", "S", "S_c", "alpha_S", "learning curve L(S)",
                                       always_irreducible=True)),
}
FORM_NAMES = tuple(FORMS)
FIX_E_FORMS = tuple(name for name, entry in FORMS.items() if entry.fix_e)


def get_form(name: str, irreducible: bool = False, fix_e: float | None = None, groups=None) -> Form:
    """The form called `name` (FORMS); `irreducible` adds L_inf to the single-variable Kaplan power laws; `fix_e`
    fixes the irreducible loss E of the chinchilla family (FIX_E_FORMS)."""
    name = name.lower().replace("-", "_")
    entry = FORMS.get(name)
    if entry is None:
        raise FitError(f"unknown law form {name!r}; choose one of {', '.join(FORM_NAMES)}")
    if fix_e is not None and not entry.fix_e:
        raise FitError(f"a fixed irreducible loss applies to {', '.join(FIX_E_FORMS[:-1])} and {FIX_E_FORMS[-1]}, "
                       f"not {name!r}")
    return entry.make(irreducible=irreducible, fix_e=fix_e, groups=groups)


def form_help(name: str) -> str:
    """The form's line in the command line's list of forms: what it is and its formula."""
    f = get_form(name)
    return f"{FORMS[name].help or f.title}: {f.text()}"
