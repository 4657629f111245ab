"""Every published constant this project compares with or plans from, in one place, each with its source.

Units: N non-embedding parameters, D tokens, B tokens per step, S optimizer steps, loss in nats per token.
Kaplan's C and C_min are in PF-days where the paper gives them so; `KAPLAN2020_LAWS` restates the single-law
constants in FLOP for the analysis. No code beyond unit conversion lives here.
"""

from __future__ import annotations

# 1 petaflop/s-day in FLOP (Kaplan et al. 2020, section 1.3)
PF_DAY = 8.64e19

# Hoffmann et al. 2022 ("Chinchilla"), eq. 10: L(N, D) = E + A / N^alpha + B / D^beta (rounded constants)
CHINCHILLA2022 = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}

# Besiroglu et al. 2024 ("Chinchilla Scaling: A replication attempt", arXiv 2404.10102): refit of Hoffmann et
# al.'s Fig. 4 points, 240 points, Huber on log loss, 4000 bootstrap resamples (shared/reference/README.md)
EPOCH2024 = {"E": 1.8169, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
EPOCH2024_SE = {"E": 0.026, "A": 124.58, "B": 1293.23, "alpha": 0.015, "beta": 0.021}
EPOCH2024_CI95 = {"E": (1.769, 1.871), "A": (285, 744), "B": (1042, 5810), "alpha": (0.317, 0.373),
                  "beta": (0.331, 0.415)}
EPOCH2024_A_EXPONENT = 0.513  # beta / (alpha + beta), SE 0.020

# Kaplan et al. 2020 ("Scaling Laws for Neural Language Models", arXiv 2001.08361), WebText2 test loss
KAPLAN2020 = {
    # single-variable laws (section 1.2; C in PF-days)
    "alpha_N": 0.076, "N_c": 8.8e13, "alpha_D": 0.095, "D_c": 5.4e13,
    "alpha_C": 0.057, "C_c": 1.6e7, "alpha_C_min": 0.050, "C_c_min": 3.1e8,
    # critical batch, eq. 5.3 (tokens)
    "alpha_B": 0.21, "B_star": 2e8,
    # L(N, D) joint fit, eq. 1.5
    "nd_N_c": 6.4e13, "nd_D_c": 1.8e13, "nd_alpha_N": 0.076, "nd_alpha_D": 0.103,
    # L(N, S) joint fit, eq. 1.6
    "ns_N_c": 6.5e13, "ns_alpha_N": 0.077, "S_c": 2.1e3, "alpha_S": 0.76,
    # compute-efficient frontier, Table 6 (C_min in PF-days)
    "N_e": 1.3e9, "p_N": 0.73, "B_e": 2.0e6, "p_B": 0.24, "S_e": 5.4e3, "p_S": 0.03, "D_e": 2e10, "p_D": 0.27,
}

# The same constants keyed by the law each belongs to, in the parameter names of scalinglab.laws' forms (C in FLOP)
KAPLAN2020_LAWS = {
    "L(N)": {"alpha_N": KAPLAN2020["alpha_N"], "N_c": KAPLAN2020["N_c"]},
    "L(D)": {"alpha_D": KAPLAN2020["alpha_D"], "D_c": KAPLAN2020["D_c"]},
    "L(C_min)": {"alpha_C_min": KAPLAN2020["alpha_C_min"], "C_c_min": KAPLAN2020["C_c_min"] * PF_DAY},
    "L(N,D)": {"alpha_N": KAPLAN2020["nd_alpha_N"], "alpha_D": KAPLAN2020["nd_alpha_D"],
               "N_c": KAPLAN2020["nd_N_c"], "D_c": KAPLAN2020["nd_D_c"]},
    "L(N,S)": {"alpha_N": KAPLAN2020["ns_alpha_N"], "alpha_S": KAPLAN2020["alpha_S"],
               "N_c": KAPLAN2020["ns_N_c"], "S_c": KAPLAN2020["S_c"]},
    "B_crit(L)": {"alpha_B": KAPLAN2020["alpha_B"], "B_star": KAPLAN2020["B_star"]},
    "N_opt(C)": {"exponent": KAPLAN2020["p_N"]},
}

# Porian et al. 2024 (arXiv 2406.19146): the compute-optimal exponent a (N_opt ~ C^a) re-measured step by step
PORIAN2024_STEPS = [
    ("Kaplan's method reproduced", 0.835),
    ("+ unembedding FLOPs counted", 0.706),
    ("+ shorter warm-up", 0.602),
    ("+ cosine decay matched to the budget", 0.571),
    ("+ AdamW beta2, LR and batch tuned per scale", 0.497),
]

# Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models", arXiv 2305.16264, section 3.1): fitted decay
# constants of the value of repeated data (R*_D) and of excess parameters (R*_N)
MUENNIGHOFF2023 = {"R_star_D": 15.4, "R_star_N": 5.3}

# Laws a user can plan with by name: (form, constants, source)
PUBLISHED = {
    "chinchilla2022": ("chinchilla", CHINCHILLA2022, "Hoffmann et al. 2022, eq. 10 (rounded constants)"),
    "epoch2024": ("chinchilla", EPOCH2024, "Besiroglu et al. 2024, refit of Hoffmann et al. Fig. 4 data"),
    "kaplan2020": ("kaplan", KAPLAN2020, "Kaplan et al. 2020, Table 6 frontier, eqs. 1.5, 1.6, 5.3"),
}

# The training compute (FLOP) each published law was measured over, (lowest, highest, source): a plan outside it
# extrapolates the law (planner.plan_compute says by how much)
COMPUTE_RANGES = {
    "chinchilla2022": (6e18, 3e21, "the IsoFLOP budgets of Hoffmann et al. 2022, Fig. 3"),
    "epoch2024": (6e18, 3e21, "the IsoFLOP budgets of Hoffmann et al. 2022, Fig. 3, whose runs it refits"),
    "kaplan2020": (1e-9 * PF_DAY, 1e1 * PF_DAY, "Kaplan et al. 2020, Fig. 1: 1e-9 to 10 PF-days"),
}
