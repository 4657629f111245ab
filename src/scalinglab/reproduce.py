"""`reproduce`: from a fresh machine to a reproduction of Kaplan et al. 2020 at the scale the machine allows.

Stages, each resumable and skipped when its outputs are complete:
1. specs  - the preset's study files are copied into OUT/ once (edit them there; an existing copy is kept);
2. data   - each spec's [data] table is prepared into OUT/data (prepare_dataset returns at once when done);
3. runs   - every spec runs into the one store OUT/study.sqlite; done runs are never redone, a killed driver's
            runs resume from their checkpoints (sweep.run_study);
4. report - laws fitted (cached in OUT/report/fits.json by the points they saw), findings checked, figures and
            OUT/report/report.html written.

OUT is scalinglab's (scalinglab.outdir): one holding a file scalinglab did not write is refused before anything
is written, unless `force`, and then only scalinglab's own files are replaced. OUT/data and OUT/report are output
directories of their own, checked when written.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from scalinglab import outdir
from scalinglab.errors import ConfigError

PRESETS = ("ci", "smoke", "cpu", "gpu", "reconcile", "reconcile_gpu", "families")
# Presets that are a reconcile plan (sweep/reconcile_plan.py), not study specs
RECONCILE_PRESETS = ("reconcile", "reconcile_gpu")
# Bootstrap resamples per fitted law: the CI preset keeps its fits to seconds.
BOOTSTRAP = {"ci": 100, "smoke": 200, "cpu": 400, "gpu": 400, "reconcile": 400, "reconcile_gpu": 400,
             "families": 200}
# Presets whose store holds more than one model family: the report also compares the families' laws
FAMILY_PRESETS = ("families",)


def preset_files(preset: str) -> list[Path]:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    root = Path(str(resources.files("scalinglab.studies").joinpath(preset)))
    files = sorted(root.glob("*.toml"))
    if not files:
        raise ConfigError(f"preset {preset!r} has no study files in {root}")
    return files


@dataclass
class ReproduceResult:
    out: Path
    store: Path
    report: Path
    findings: list
    fits: dict
    timings: dict = field(default_factory=dict)
    runs_ran: int = 0
    reconcile: object = None  # the ReconcileAnalysis of a reconcile preset


STORE = "study.sqlite"
# the store, its SQLite journals and the study driver's lock: scalinglab's files beside the store
STORE_FILES = tuple(STORE + s for s in ("", "-wal", "-shm", "-journal", ".lock"))
# OUT's subdirectories that are outputs of their own (each with its manifest): the data, the report, checkpoints
NESTED = ("data", "report", STORE + ".ckpt")
_WRITTEN_SPEC = re.compile(r"^# written from plan\.toml by `scalinglab reproduce")


def reproduce_files(preset: str):
    """The legacy recogniser of a reproduction's OUT (one written before output manifests): the preset's spec
    copies, the specs a reconcile plan wrote (by their header), the store and its journal files, timings.json,
    the temporary directory a killed data preparation left."""
    def files(path: Path) -> set[str]:
        names = {f.name for f in preset_files(preset)} | {"timings.json"}
        names |= set(STORE_FILES)
        found = set()
        for p in path.iterdir():
            if p.name in names and p.is_file():
                found.add(p.name)
            elif p.suffix == ".toml" and p.is_file():
                with open(p, encoding="utf-8", errors="replace") as f:
                    if _WRITTEN_SPEC.match(f.readline()):
                        found.add(p.name)
            elif p.is_dir() and outdir.OLD_TMP.match(p.name) and p.name.startswith(".data."):
                found.update(f"{p.name}/{q.name}" for q in p.iterdir())
        return found
    return files


def claim_out(preset: str, out: Path, force: bool = False) -> Path:
    """OUT made scalinglab's (refused when it holds a file scalinglab did not write, unless `force`)."""
    outdir.claim(out, "reproduce", legacy=reproduce_files(preset), force=force, nested=NESTED)
    if not (out / STORE).exists() or STORE in outdir.owned(out):  # the store (and its journals) scalinglab creates
        outdir.adopt(out, STORE_FILES)
    return out


def copy_preset(preset: str, out: Path, force: bool = False) -> list[Path]:
    """The preset's spec files in OUT (copied the first time; a user's edits to the copies are kept)."""
    claim_out(preset, out, force)
    specs = []
    for f in preset_files(preset):
        dest = out / f.name
        if not dest.exists():
            outdir.write_bytes(dest, f.read_bytes())
        specs.append(dest)
    return specs


def reproduce(preset: str = "smoke", out: str | Path | None = None, *, workers: int | None = None,
              n_resamples: int | None = None, progress: bool | str = True, log=print,
              group: bool = False, tracker: str | None = None, tracker_dir: str | None = None,
              force: bool = False) -> ReproduceResult:
    """Run a preset end to end into `out`. tracker / tracker_dir: live tracking of every run (scalinglab.tracking;
    default folder OUT/study.sqlite.tracking/<tracker>); force: write into an OUT holding other files, replacing only
    scalinglab's own."""
    from scalinglab.report.html import write_report
    from scalinglab.sweep import load_study, run_study

    out = Path(out or f"reproduce-{preset}")
    if preset in RECONCILE_PRESETS:
        return reproduce_reconcile(preset, out, workers=workers, n_resamples=n_resamples, progress=progress, log=log,
                                   group=group, tracker=tracker, tracker_dir=tracker_dir, force=force)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    specs = copy_preset(preset, out, force)

    studies = []
    for spec in specs:
        log(f"[data] {spec.name}")
        studies.append(load_study(spec, progress=bool(progress), force=force))  # prepares the data when missing
    timings["data_s"] = time.perf_counter() - t0
    stores = {s.store_path for s in studies}
    if len(stores) != 1:
        raise ConfigError(f"preset {preset!r}: its specs write to {len(stores)} stores; give them one `store`")
    store = stores.pop()

    t1 = time.perf_counter()
    ran = 0
    for study in studies:
        log(f"[runs] {study.name}: {len(study.runs)} runs")
        study.tracker, study.tracker_dir = tracker, tracker_dir
        summary = run_study(study, executor="local", workers=workers, progress=progress, group=group)
        ran += summary.ran
    timings["runs_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    log("[report] fitting laws, checking findings, drawing figures")
    rep = write_report(store, out / "report", n_resamples=n_resamples or BOOTSTRAP.get(preset, 300),
                       name=f"{preset} preset", force=force)
    if preset in FAMILY_PRESETS:
        from scalinglab.analysis.families import compare_store, write_comparison

        log("[report] the model families compared (report/families.txt)")
        cmp = compare_store(store, n_resamples=n_resamples or BOOTSTRAP.get(preset, 300))
        write_comparison(cmp, out / "report")
        log(cmp.summary())
    timings["report_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0
    outdir.write_text(out / "timings.json", json.dumps(timings, indent=1))
    return ReproduceResult(out=out, store=store, report=rep.path, findings=rep.findings, fits=rep.fits,
                           timings=timings, runs_ran=ran)


def reproduce_reconcile(preset: str, out: Path, *, workers=None, n_resamples=None, progress=True,
                        log=print, group: bool = False, tracker=None, tracker_dir=None,
                        force: bool = False) -> ReproduceResult:
    """The reconcile preset: its plan (OUT/plan.toml) expanded into study specs written to OUT, each run into
    OUT/study.sqlite; the tuned grid planned from the sweep's results; then the reconcile report."""
    from scalinglab.report.reconcile import write_reconcile_report
    from scalinglab.store import RunStore
    from scalinglab.sweep import load_study, run_study
    from scalinglab.sweep import reconcile_plan as rp

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    copy_preset(preset, out, force)
    plan_path = out / "plan.toml"
    plan, vocab = rp.load_plan_and_vocab(plan_path, out / "data")
    ran, store = 0, out / "study.sqlite"
    run_ids: set[str] = set()  # the current specs' runs: an edited plan's earlier runs stay in the store, unread

    def run(name, spec, header):
        nonlocal ran, plan, vocab
        path = rp.write_spec(spec, out / name, header)
        study = load_study(path, progress=bool(progress), force=force)  # prepares the data the first time
        run_ids.update(r.run_id() for r in study.runs)
        study.tracker, study.tracker_dir = tracker, tracker_dir
        log(f"[runs] {study.name}: {len(study.runs)} runs")
        ran += run_study(study, executor="local", workers=workers, progress=progress, group=group).ran
        return study

    header = f"written from {plan_path.name} by `scalinglab reproduce --preset {preset}`; edit the plan, not this"
    for i, (name, spec) in enumerate(rp.plan_specs(plan, vocab)):
        run(name, spec, header)
        if i == 0:  # the data exists now: plan with its real vocabulary
            plan, vocab = rp.load_plan_and_vocab(plan_path, out / "data")
    with RunStore(store, readonly=True) as st:
        runs = st.runs()
    spec, _ = rp.tuned_spec(plan, vocab, runs)
    if spec is not None:
        run("5_tuned.toml", spec, header + "; each size's LR, batch and beta2 chosen by 4_tune (lowest validation loss)")
    timings["runs_s"] = time.perf_counter() - t0
    t2 = time.perf_counter()
    log("[report] three approaches per setting, the exponent's path, findings")
    rep = write_reconcile_report(store, out / "report", n_resamples=n_resamples or BOOTSTRAP.get(preset, 300),
                                 budgets=plan.budgets, name=f"{preset} preset", run_ids=run_ids, force=force)
    timings["report_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0
    timings["data_s"] = 0.0
    outdir.write_text(out / "timings.json", json.dumps(timings, indent=1))
    return ReproduceResult(out=out, store=store, report=rep.path, findings=[], fits={}, timings=timings,
                           runs_ran=ran, reconcile=rep.analysis)
