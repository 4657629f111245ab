"""No command deletes or overwrites a file it did not write: every command that writes a path, pointed at a
directory of the user's files (nested ones included), leaves each of them byte for byte and with its mtime; a
directory scalinglab wrote (manifest, or an older version's recognised files) is rebuilt; and a SIGKILL while
`data prepare` writes into a directory of the user's files leaves them as they were."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli, train_store

from scalinglab.data import TokenDataset

# the user's files: names scalinglab also writes (a report, its caches, shards, exports, a spec copy) and others
FOREIGN = {
    "thesis.tex": b"\\documentclass{article} my thesis\n",
    "sub/results.csv": b"run,loss\n1,3.2\n",
    "report.html": b"<html>my own report</html>\n",
    "fits.json": b'{"mine": true}\n',
    "meta.json": b'{"about": "my data"}\n',
    "train.bin": b"\x00\x01\x02\x03",
    "study_runs.csv": b"a,b\n1,2\n",
    "timings.json": b"{}\n",
}


def make_foreign(root: Path, files: dict = FOREIGN) -> dict:
    """The user's files under `root`, and their (bytes, mtime_ns) to compare with later."""
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.utime(p, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    return snapshot(root, files)


def snapshot(root: Path, names) -> dict:
    out = {}
    for name in names:
        p = root / name
        out[name] = (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
    return out


def corpus(tmp: Path) -> Path:
    """A small corpus of the user's own text files (no download): 40 documents of 400 words."""
    import random

    d = tmp / "corpus"
    d.mkdir(exist_ok=True)
    words = "alpha beta gamma delta the of cat dog runs under over quickly".split()
    for i in range(40):
        rng = random.Random(i)
        (d / f"doc{i}.txt").write_text(" ".join(rng.choice(words) for _ in range(400)) + "\n")
    return d


def prepare_args(src: Path, out: Path, *extra: str) -> list[str]:
    return ["data", "prepare", "--corpus", str(src), "--tokenizer", "bpe-300", "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def store(byte_dataset, tmp_path_factory) -> Path:
    """A real study store of three tiny runs (the size sweep), enough for a report."""
    runs = [(dict(n_layer=1, d_model=d, n_head=2), ["sizes"]) for d in (8, 16, 24)]
    return train_store(tmp_path_factory.mktemp("outputs") / "s.sqlite", byte_dataset, "o", runs, n_ctx=32,
                       tokens=8_000, batch_size=8, n_evals=3, eval_tokens=1024)


def _one_line_refusal(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "scalinglab did not write" in lines[0]
    return lines[0]


def test_data_prepare_into_a_directory_of_the_users_files(tmp_path):
    """The issue's first row: `data prepare --out DIR` with DIR holding thesis.tex and sub/results.csv deleted
    both. Now it is refused, naming a file; --force writes the shards beside them; a rebuild replaces only the
    shards."""
    src = corpus(tmp_path)
    out = tmp_path / "DIR"
    files = {"thesis.tex": FOREIGN["thesis.tex"], "sub/results.csv": FOREIGN["sub/results.csv"]}
    before = make_foreign(out, files)
    line = _one_line_refusal(run_cli(*prepare_args(src, out)))
    assert "'sub/results.csv'" in line or "'thesis.tex'" in line
    assert snapshot(out, files) == before and sorted(p.name for p in out.iterdir()) == ["sub", "thesis.tex"]

    r = run_cli(*prepare_args(src, out, "--force"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("prepared ") and len(r.stdout.strip().splitlines()) == 1  # --quiet
    assert snapshot(out, files) == before and TokenDataset(out).n_tokens("train") > 0
    first = (out / "train.bin").read_bytes()
    r = run_cli(*prepare_args(src, out, "--force", "--seed", "7"))  # a rebuild: other shards, same user files
    assert r.returncode == 0, r.stderr
    assert snapshot(out, files) == before and (out / "train.bin").read_bytes() != first
    # without --force the directory is still refused: it holds files scalinglab did not write
    _one_line_refusal(run_cli(*prepare_args(src, out, "--seed", "8")))
    assert snapshot(out, files) == before


def test_a_dataset_of_an_older_version_is_rebuilt_and_its_foreign_files_refused(tmp_path):
    """An older scalinglab wrote no manifest: its dataset (recognised by its meta.json) is rebuilt as before;
    the same directory with one file of the user's beside it is refused."""
    from scalinglab.outdir import MANIFEST

    src = corpus(tmp_path)
    out = tmp_path / "old"
    assert run_cli(*prepare_args(src, out)).returncode == 0
    (out / MANIFEST).unlink()  # as an older version left it
    r = run_cli(*prepare_args(src, out, "--seed", "3"))
    assert r.returncode == 0, r.stderr
    assert TokenDataset(out).meta["split"]["seed"] == 3 and (out / MANIFEST).is_file()
    (out / MANIFEST).unlink()
    (out / "notes.txt").write_text("mine")
    line = _one_line_refusal(run_cli(*prepare_args(src, out, "--seed", "4")))
    assert "'notes.txt'" in line and (out / "notes.txt").read_text() == "mine"
    assert TokenDataset(out).meta["split"]["seed"] == 3  # nothing rebuilt


def _foreign_sqlite(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (t TEXT)")
    con.execute("INSERT INTO notes VALUES ('mine')")
    con.commit()
    con.close()


@pytest.mark.slow(seconds=60)
def test_no_command_changes_a_file_it_did_not_write(store, byte_dataset, tmp_path):
    """Every command with --out (or another path it writes), pointed at a directory of the user's files: each of
    them keeps its bytes and mtime, whether the command is refused (exit 2, one line) or, with --force, writes its
    own files beside them."""
    src = corpus(tmp_path)
    train = ["--data", str(byte_dataset), "--n-layer", "1", "--d-model", "8", "--n-head", "2", "--n-ctx", "32",
             "--tokens", "2000", "--batch-size", "8", "--eval-tokens", "512", "--no-progress"]
    cases = {  # name: (arguments given the directory, expected exit code)
        "data prepare": (lambda d: prepare_args(src, d), 2),
        "data prepare --force": (lambda d: prepare_args(src, d, "--force"), 2),  # meta.json, train.bin are the user's
        "report": (lambda d: ["report", str(store), "--out", str(d), "--bootstrap", "10"], 2),
        "report --force": (lambda d: ["report", str(store), "--out", str(d), "--bootstrap", "10", "--force"], 2),
        "reproduce": (lambda d: ["reproduce", "--preset", "ci", "--out", str(d), "--quiet"], 2),
        "runs export (a name taken)": (lambda d: ["runs", "export", "--store", str(store), "--out", str(d / "study")],
                                       2),
        "runs export (new names)": (lambda d: ["runs", "export", "--store", str(store), "--out", str(d / "mine")], 0),
        "train --store (not a store)": (lambda d: ["train", "--store", str(d / "thesis.tex"), *train], 2),
        "train --store (another app's SQLite)": (lambda d: ["train", "--store", str(d / "other.sqlite"), *train], 2),
    }
    for name, (args, code) in cases.items():
        d = tmp_path / name.replace(" ", "_").replace("(", "").replace(")", "").replace("'", "")
        before = make_foreign(d)
        _foreign_sqlite(d / "other.sqlite")
        before["other.sqlite"] = snapshot(d, ["other.sqlite"])["other.sqlite"]
        r = run_cli(*args(d))
        assert r.returncode == code, (name, r.returncode, r.stderr[-2000:])
        if code == 2:
            assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, (name, r.stderr)
        assert snapshot(d, before) == before, name
        assert not list(d.glob("other.sqlite-*")), name  # not even opened for writing
    # the nested case of the issue: OUT/data holding the user's file, OUT itself scalinglab's
    out = tmp_path / "repro"
    before = make_foreign(out / "data", {"thesis.tex": FOREIGN["thesis.tex"]})
    r = run_cli("reproduce", "--preset", "ci", "--out", str(out), "--quiet")
    assert r.returncode == 2 and "thesis.tex" in r.stderr.strip().splitlines()[-1], r.stderr
    assert snapshot(out / "data", before) == before


def test_report_rebuilds_its_own_directory_and_an_older_versions(store, tmp_path):
    """A report directory scalinglab wrote is rebuilt in place (its files replaced, no manifest needed from an
    older version: its page is recognised); a user's report.html and fits.json there are refused, not
    overwritten (the issue's third row)."""
    from scalinglab.outdir import MANIFEST

    out = tmp_path / "rep"
    r = run_cli("report", str(store), "--out", str(out), "--bootstrap", "10")
    assert r.returncode == 0, r.stderr
    page = (out / "report.html").read_text()
    (out / MANIFEST).unlink()  # an older version's report
    r = run_cli("report", str(store), "--out", str(out), "--bootstrap", "10")
    assert r.returncode == 0, r.stderr
    assert (out / MANIFEST).is_file() and (out / "report.html").read_text() != "" and page
    user = tmp_path / "user"
    before = make_foreign(user, {"report.html": FOREIGN["report.html"], "fits.json": FOREIGN["fits.json"]})
    line = _one_line_refusal(run_cli("report", str(store), "--out", str(user), "--bootstrap", "10"))
    assert "'fits.json'" in line or "'report.html'" in line
    assert snapshot(user, before) == before and not (user / "fig1.png").exists()


@pytest.mark.slow(seconds=30)
def test_sigkill_during_data_prepare_leaves_the_users_files(tmp_path):
    """`data prepare --force` into a directory of the user's files, killed (SIGKILL) while it writes, at the moment
    its shards are being built and at random moments: the user's files are untouched every time, and the next run
    completes the dataset beside them."""
    import random

    out = tmp_path / "DIR"
    before = make_foreign(out, {"thesis.tex": FOREIGN["thesis.tex"], "sub/results.csv": FOREIGN["sub/results.csv"]})
    cache = tmp_path / "cache"
    args = ["data", "prepare", "--corpus", "stdlib", "--max-bytes", "1500000", "--tokenizer", "bpe-512", "--out",
            str(out), "--cache-dir", str(cache), "--transfer", "--quiet", "--force"]
    rng = random.Random(os.getpid())
    kills = 0
    # up to 10 tries, alternating a kill as the shards are written with one at a random moment, until 2 kills have
    # landed (on a quick machine a try can finish before its kill: each try is a new seed, so a new dataset)
    for i, seed in enumerate(range(1, 11)):
        if kills >= 2 and i >= 2:
            break
        proc = subprocess.Popen([sys.executable, "-m", "scalinglab.cli", *args, "--seed", str(seed)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + (rng.uniform(0.5, 4.0) if i % 2 else 120)
        while time.time() < deadline and proc.poll() is None:
            if i % 2 == 0 and any(p.name.startswith(".scalinglab-tmp-") for p in tmp_path.iterdir()):
                break  # its shards are being written beside the directory
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert snapshot(out, before) == before, f"kill {i}"
    assert kills >= 2
    r = run_cli(*args, "--seed", "11")
    assert r.returncode == 0, r.stderr
    assert snapshot(out, before) == before and TokenDataset(out).meta["split"]["seed"] == 11
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".scalinglab-tmp-")]  # no temporary left
