"""Kill anywhere: `scalinglab reproduce --preset ci`, SIGKILLed (driver and workers, the whole process group) at
20+ seeded random moments across data preparation, training, checkpoint writes, store commits and the report, and
restarted each time, ends with every run done exactly once, curves identical to an uninterrupted run's, and the
same fitted laws and findings.

The preset's spec is copied and edited the way a user would edit it (`reproduce` keeps an edited copy): a quarter
of the token budget so 20+ restarts fit in CI's time, and a checkpoint every 0.3 s so a kill costs little work.
Neither changes what is being tested: both copies (uninterrupted and killed) run the same edited spec, and the
checkpoint interval is not part of a run's id.

Kill points come from the measured uninterrupted run: one inside data preparation (once the corpus cache appears,
within 60% of the stage's measured time), one inside the report, the rest inside training. A training kill waits
for that restart's first run to start and for the study to reach a seeded random share (2-60%) of the
uninterrupted run's logged curve points, then lands after a random fraction of the time two points take: so the
kills spread over the training whatever the machine's speed does between the two copies (the suite runs beside
other tests, and the cores' speed drifts by tens of percent).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import group_alive

from scalinglab.reproduce import copy_preset

SEED = 20261128
N_KILLS = 20
CMD = [sys.executable, "-m", "scalinglab.cli", "reproduce", "--preset", "ci", "--quiet", "--bootstrap", "20"]

pytestmark = pytest.mark.slow(seconds=300)


def _edited_preset(out: Path) -> None:
    [spec] = copy_preset("ci", out)
    text = spec.read_text()
    new = re.sub(r"(?m)^tokens = .*$", "tokens = 40_000", text)
    new = re.sub(r"(?m)^checkpoint_every_s = .*$", "checkpoint_every_s = 0.3", new)
    assert new.count("tokens = 40_000") == 1 and new.count("checkpoint_every_s = 0.3") == 1, "the ci preset changed"
    spec.write_text(new)


def _cache(out: Path) -> Path:
    """Each copy its own corpus and tokenizer cache, so both prepare their data from scratch."""
    return out.parent / f"{out.name}.cache"


def _start(out: Path) -> subprocess.Popen:
    env = {**os.environ, "SCALINGLAB_CACHE": str(_cache(out))}
    return subprocess.Popen([*CMD, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, text=True, env=env)


def _query(store: Path, sql: str) -> list[tuple]:
    if not store.exists():
        return []
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.Error:  # caught while the store is being created
        return []
    finally:
        con.close()


def _attempts(store: Path) -> int:
    return sum(a for (a,) in _query(store, "SELECT attempts FROM runs"))


def _progress(store: Path) -> int:
    """Curve points of all runs in the store (written at evaluations and checkpoints; a resumed run rewinds to its
    checkpoint's)."""
    return sum(n for (n,) in _query(store, "SELECT COUNT(*) FROM points"))


def _n_done(store: Path) -> int:
    return len(_query(store, "SELECT run_id FROM runs WHERE status = 'done'"))


def _stage(out: Path) -> str:
    """Where the pipeline stood when it was killed (from what it had written)."""
    if not (out / "data" / "meta.json").is_file():
        return "data"
    status = [s for (s,) in _query(out / "study.sqlite", "SELECT status FROM runs")]
    if len(status) < 5 or any(s != "done" for s in status):
        return "training"
    return "report"


def _curves(store: Path) -> dict:
    pts = _query(store, "SELECT run_id, step, tokens, lr, train_loss FROM points ORDER BY run_id, step")
    evs = _query(store, "SELECT run_id, step, eval_set, loss FROM evals ORDER BY run_id, step, eval_set")
    out: dict = {}
    for rid, *rest in pts:
        out.setdefault(rid, {"points": [], "evals": []})["points"].append(tuple(rest))
    for rid, *rest in evs:
        out.setdefault(rid, {"points": [], "evals": []})["evals"].append(tuple(rest))
    return out


def _report_content(out: Path) -> tuple[dict, list]:
    """The fitted laws (parameters, intervals, convergence, the data they saw) and the findings: the report's
    content without its timestamps."""
    fits = json.loads((out / "report" / "fits.json").read_text())
    laws = {k: {f: v["law"].get(f) for f in ("params", "ci95", "se", "converged", "n_points", "formula")}
            for k, v in fits.items()}
    findings = json.loads((out / "report" / "findings.json").read_text())
    return laws, findings


def test_ci_preset_killed_anywhere_finishes_every_run_once_with_identical_results(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    _edited_preset(ref)
    _edited_preset(killed)

    t0 = time.perf_counter()
    proc = _start(ref)
    _, err = proc.communicate(timeout=600)
    t_ref = time.perf_counter() - t0
    assert proc.returncode == 0, err[-2000:]
    stages = json.loads((ref / "timings.json").read_text())
    # kill points, seeded: one inside data preparation, timed from the moment the corpus cache appears (the data
    # stage's start; t_ref also holds the interpreter's start and exit, so it cannot place it); the rest inside
    # training, each once this restart's first run trains (so every restart also pays its start-up) and the study
    # has logged a random share of the points, then after a random fraction of the time two points take; one inside
    # the report, timed from the moment the last run is done
    rng = random.Random(SEED)
    total_points = _progress(ref / "study.sqlite")
    two_points_s = 2 * stages["runs_s"] / total_points
    # up to 60%: a restart can carry the study several points past its target (measured: up to 10 of 60)
    shares = sorted(rng.uniform(0.02, 0.6) for _ in range(N_KILLS - 2))
    plan = ([("data", 0, rng.uniform(0.0, 0.6 * stages["data_s"]))]
            + [("training", int(s * total_points), rng.uniform(0.0, two_points_s)) for s in shares]
            + [("report", 0, rng.uniform(0.0, 0.8 * stages["report_s"]))])
    kills, where = 0, {}
    store = killed / "study.sqlite"
    for phase, points, offset in plan:
        attempts0 = _attempts(store)
        proc = _start(killed)
        while proc.poll() is None:  # wait for the phase this kill point belongs to
            if (phase == "data" and (_cache(killed) / "corpora").exists()) or (
                    phase == "training" and _attempts(store) > attempts0 and _progress(store) >= points) or (
                    phase == "report" and _n_done(store) == 5):
                break
            time.sleep(0.02)
        t_phase = time.perf_counter()
        try:
            proc.wait(timeout=max(0.0, t_phase + offset - time.perf_counter()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers at once, as a crash or `kill -9`
            kills += 1
        proc.communicate()
        for _ in range(200):  # the whole group is gone: no orphaned worker finishes a run later
            if not group_alive(proc.pid):
                break
            time.sleep(0.02)
        assert not group_alive(proc.pid)
        if proc.returncode == 0:
            break  # the study finished before this kill point
        assert proc.returncode == -signal.SIGKILL
        stage = _stage(killed)
        where[stage] = where.get(stage, 0) + 1
    final = _start(killed)
    _, err = final.communicate(timeout=600)
    assert final.returncode == 0, err[-2000:]

    store_ref, store_k = ref / "study.sqlite", killed / "study.sqlite"
    runs_ref = _query(store_ref, "SELECT run_id, status, attempts FROM runs")
    runs_k = _query(store_k, "SELECT run_id, status, attempts FROM runs")
    attempts = {rid: a for rid, _, a in runs_k}
    curves_ref, curves_k = _curves(store_ref), _curves(store_k)
    max_diff = max((abs(a[-1] - b[-1]) for rid in curves_ref for kind in ("points", "evals")
                    for a, b in zip(curves_ref[rid][kind], curves_k.get(rid, {}).get(kind, []))), default=0.0)
    print(f"\nkill test: {kills} kill points ({where}), {len(runs_k)} runs, "
          f"{sum(s == 'done' for _, s, _ in runs_k)} done, attempts {sorted(attempts.values())}, "
          f"uninterrupted run {t_ref:.1f} s, max loss difference {max_diff}")

    assert kills >= 20, f"only {kills} kills landed before the study finished ({where})"
    assert where.get("training", 0) >= 10, where
    assert len(runs_k) == len(runs_ref) == 5
    assert all(s == "done" for _, s, _ in runs_k)
    assert sum(a > 1 for a in attempts.values()) >= 1  # some run was interrupted and resumed
    # exactly once: one row per run, no duplicated curve point, and the same curve as the uninterrupted run
    assert not _query(store_k, "SELECT run_id, step, COUNT(*) FROM points GROUP BY run_id, step HAVING COUNT(*) > 1")
    assert set(curves_k) == set(curves_ref)
    for rid in curves_ref:
        assert curves_k[rid] == curves_ref[rid], rid
    assert max_diff == 0.0
    assert not list((killed / "study.sqlite.ckpt").glob("*/checkpoint.pt"))  # finished runs leave no checkpoint
    assert _report_content(killed) == _report_content(ref)
