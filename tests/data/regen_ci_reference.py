"""Re-record tests/data/ci_reference.json: the ci preset's fits.json and findings.json, which
tests/test_reproduce.py pins (its one-thread runs are deterministic, so any change shows).

    python3 tests/data/regen_ci_reference.py

Runs `scalinglab reproduce --preset ci` on one thread in a temporary directory (about 2-4 minutes on 2 cores) and
writes the reference next to this file. Run it when a change to training, fitting or the findings is meant to
move the numbers, and commit the new reference with that change (the diff shows what moved). The reference
names the data it was recorded on: the ci preset trains on this interpreter's standard library, so another
CPython version prepares other data and gets its own numbers.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REFERENCE = Path(__file__).resolve().with_name("ci_reference.json")
COMMAND = "python3 tests/data/regen_ci_reference.py"


def data_identity(out: Path) -> dict:
    """What the ci preset's prepared data is made of: the corpus (this interpreter's standard library: its
    version and text hash) and the trained tokenizer."""
    meta = json.loads((out / "data" / "meta.json").read_text())
    (src,) = meta["sources"]
    return {"corpus_version": src["version"], "corpus_text_sha256": src["text_sha256"],
            "tokenizer_sha256": meta["tokenizer"]["sha256"]}


def read_outputs(out: Path) -> dict:
    """The pinned results of a `reproduce --preset ci --out OUT` directory."""
    rep = out / "report"
    return {"data": data_identity(out), "fits": json.loads((rep / "fits.json").read_text()),
            "findings": json.loads((rep / "findings.json").read_text())}


def main() -> int:
    import numpy
    import torch

    with tempfile.TemporaryDirectory(prefix="ci-reference-") as tmp:
        out = Path(tmp) / "ci"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as the tests run it: one thread, deterministic
        src = Path(__file__).resolve().parents[2] / "src"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH")) if p)
        res = subprocess.run([sys.executable, "-m", "scalinglab.cli", "reproduce", "--preset", "ci", "--out",
                              str(out), "--quiet"], env=env, cwd=tmp)
        if res.returncode != 0:
            print(f"regen_ci_reference: `scalinglab reproduce --preset ci` failed (exit {res.returncode})",
                  file=sys.stderr)
            return 1
        ref = {"about": "the ci preset's report/fits.json and report/findings.json, pinned by "
                        "tests/test_reproduce.py; re-record with the command below",
               "command": COMMAND,
               "recorded_with": {"python": platform.python_version(), "torch": torch.__version__,
                                 "numpy": numpy.__version__, "machine": platform.machine()},
               **read_outputs(out)}
    REFERENCE.write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE.relative_to(REFERENCE.parents[2])}: {len(ref['fits'])} fits, "
          f"{len(ref['findings'])} findings, verdicts "
          + " ".join(f"{f['number']}:{f['agrees']}" for f in ref["findings"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
