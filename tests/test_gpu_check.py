"""benchmarks/gpu_check.py: the GPU path's one command. Its dry run works anywhere; the check itself needs CUDA."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
CHECKS = ["device", "bf16 autocast", "fused SDPA", "torch.compile", "DDP over NCCL", "gpu preset", "throughput",
          "GPU vs CPU loss"]


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def test_dry_run_lists_every_check_after_importing_what_they_use():
    r = _run("--dry-run")
    assert r.returncode == 0, r.stderr
    assert "imports ok" in r.stdout and "specs expand (4 runs)" in r.stdout
    rows = [line.split("  ")[0].strip() for line in r.stdout.splitlines() if "  would  " in line]
    assert rows == CHECKS
    assert "torchrun --nproc_per_node 1 -m scalinglab.sweep.ddp_worker" in r.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_one_line_and_exit_2():
    r = _run()
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no CUDA device" in r.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_every_gpu_check_passes(tmp_path):
    r = _run("--out", str(tmp_path / "check"), timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in CHECKS:
        assert any(line.startswith(name) and "  ok  " in line for line in r.stdout.splitlines()), name
