"""Comparing laws across model families (analysis/families.py) on simulations of known truth: each family's
alpha_N interval covers its true exponent, and the interval of the difference excludes zero where the families'
exponents differ and includes it where they are equal."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synthetic_study import run

from scalinglab.analysis.families import compare_families

SIZES = np.geomspace(1e4, 1e6, 6)


def _family_runs(family: str, alpha: float, n_c: float, rng, noise: float, tag: str = "") -> list[dict]:
    out = []
    for i, n in enumerate(SIZES):
        final = (n_c / n) ** alpha * np.exp(rng.normal(0, noise))
        # a learning curve that falls to its final loss, so the frontier has something to envelope
        r = run(f"{family}{tag}-{i}", N=float(n), roles="sizes", loss=lambda s, f=final: f * (1 + 2.0 / s ** 0.5))
        r["run"]["config"] = json.dumps({"family": family, "extra": {}})
        out.append(r)
    return out


def _frames(runs):
    rr = pd.DataFrame([r["run"] for r in runs])
    cur = pd.concat([r["curve"] for r in runs], ignore_index=True)
    roles = pd.DataFrame([(r["run"]["run_id"], role, "spec") for r in runs for role in r["roles"]],
                         columns=["run_id", "role", "study"])
    return rr, cur, roles


@pytest.mark.parametrize("alphas,differ", [((0.076, 0.095), True), ((0.076, 0.076), False)])
def test_family_exponents_and_their_difference_recover_the_truth(alphas, differ):
    rng = np.random.default_rng(1)
    runs = _family_runs("gpt2", alphas[0], 8.8e13, rng, 0.004) + _family_runs("llama", alphas[1], 2e12, rng, 0.004)
    cmp = compare_families(*_frames(runs), n_resamples=300, frontier=False)
    assert cmp.order == ("gpt2", "llama")
    for fam, truth in zip(cmp.order, alphas):
        est, lo, hi = cmp.families[fam].alpha_n
        assert lo <= truth <= hi, (fam, est, lo, hi)
        assert hi - lo < 0.02  # informative, not a vacuous interval
    d = cmp.differences[0]
    assert d.what == "alpha_N" and d.method.startswith("paired")
    assert d.low <= alphas[1] - alphas[0] <= d.high
    assert d.excludes_zero is differ
    text = cmp.summary()
    assert "alpha_N(llama) - alpha_N(gpt2)" in text
    assert ("the families differ" in text) is differ


def test_unequal_sizes_use_the_joint_bootstrap_and_one_family_has_nothing_to_compare():
    rng = np.random.default_rng(2)
    runs = _family_runs("gpt2", 0.076, 8.8e13, rng, 0.004) + _family_runs("llama", 0.11, 2e12, rng, 0.004)[:4]
    cmp = compare_families(*_frames(runs), n_resamples=200, frontier=False)
    d = cmp.differences[0]
    assert d.method.startswith("joint") and d.excludes_zero and d.low <= 0.11 - 0.076 <= d.high
    only = compare_families(*_frames(runs[:6]), n_resamples=50, frontier=False)
    assert only.order is None and not only.differences and "nothing to compare" in only.summary()
    few = compare_families(*_frames(runs[:6] + runs[6:8]), n_resamples=50, frontier=False)  # llama: 2 sizes
    assert few.families["llama"].alpha_n is None and not few.differences
    assert any("need at least 3" in n for n in few.families["llama"].notes)


def test_n_opt_exponents_are_fitted_per_family_from_the_frontier():
    rng = np.random.default_rng(3)
    runs = _family_runs("gpt2", 0.076, 8.8e13, rng, 0.004) + _family_runs("llama", 0.095, 2e12, rng, 0.004)
    cmp = compare_families(*_frames(runs), n_resamples=40)
    for fam in cmp.order:
        est, lo, hi = cmp.families[fam].n_opt
        assert lo <= est <= hi and est > 0  # bigger models on the frontier as compute grows
    d = cmp.differences[1]
    assert d.what == "N_opt exponent" and d.method == "normal approximation" and d.low < d.estimate < d.high
    assert json.loads(json.dumps(cmp.to_dict()))["differences"][1]["what"] == "N_opt exponent"


@pytest.mark.slow(seconds=25)
def test_one_store_trained_with_both_families_is_compared_by_the_cli(byte_dataset, tmp_path):
    from conftest import run_cli, train_store

    sizes = [dict(n_layer=1, d_model=16, n_head=2), dict(n_layer=1, d_model=32, n_head=4),
             dict(n_layer=2, d_model=48, n_head=4)]
    store = train_store(tmp_path / "s.sqlite", byte_dataset, "fam",
                        [({**s, "family": f}, ["sizes"]) for f in ("gpt2", "llama") for s in sizes],
                        n_ctx=32, batch_size=8, tokens=60 * 8 * 32, lr=3e-3, n_evals=4, eval_tokens=2048)
    res = run_cli("study", "families", str(store), "--bootstrap", "50", "--no-frontier", "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["order"] == ["gpt2", "llama"]
    for fam in ("gpt2", "llama"):
        assert got["families"][fam]["n_runs"] == 3 and len(got["families"][fam]["sizes"]) == 3
    # same shapes, different N: llama has no biases and no position table, and a SwiGLU of 8/3 d_model
    assert all(g > l for g, l in zip(got["families"]["gpt2"]["sizes"], got["families"]["llama"]["sizes"]))
    text = run_cli("study", "families", str(store), "--bootstrap", "50", "--no-frontier")
    assert text.returncode == 0 and "llama: 3 runs, 3 sizes" in text.stdout
    bad = run_cli("study", "families", str(tmp_path / "none.sqlite"))
    assert bad.returncode != 0 and "no such run store" in bad.stderr and "Traceback" not in bad.stderr


def test_no_interval_is_no_verdict():
    from scalinglab.analysis.families import Difference, FamilyComparison, FamilyLaws

    a = FamilyLaws("gpt2", 4, [1e4, 1e5, 1e6], None, (0.5, float("nan"), float("nan")), n_opt_se=0.0)
    b = FamilyLaws("llama", 4, [1e4, 1e5, 1e6], None, (0.8, float("nan"), float("nan")), n_opt_se=0.0)
    d = Difference("N_opt exponent", 0.3, float("nan"), float("nan"), "no interval")
    assert not d.excludes_zero
    text = FamilyComparison({"gpt2": a, "llama": b}, [d], ("gpt2", "llama")).summary()
    assert "no verdict" in text and "differ" not in text
