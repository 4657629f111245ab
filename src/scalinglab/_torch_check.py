"""The oldest torch scalinglab trains with, checked when torch is first used (importing this module checks).

- torch 2.4 added the fused AdamW kernel on CPU (pytorch/pytorch#123074, merged April 2024; 2.3's AdamW says
  `fused=True` needs CUDA), which train.make_optimizer uses on every device;
- torch 2.5 added torch.optim.Adafactor (pytorch/pytorch#129905, July 2024), the optimizer of `optimizer =
  "adafactor"` runs (Kaplan et al. use it above 1e9 parameters).
So the bound is 2.5; pyproject.toml's `torch>=2.5` says the same. Fitting and planning never import torch.
"""

from __future__ import annotations

import re

from scalinglab.errors import DependencyError

TORCH_MIN = (2, 5)


def parse_version(text: str) -> tuple[int, int]:
    """'2.13.0+cpu' -> (2, 13); '2.5.0a0+git123' -> (2, 5)."""
    m = re.match(r"\s*(\d+)\.(\d+)", str(text))
    if not m:
        raise DependencyError(f"cannot read the torch version {text!r}; install torch>={TORCH_MIN[0]}.{TORCH_MIN[1]}")
    return int(m.group(1)), int(m.group(2))


def check_torch(version: str | None = None) -> None:
    """Raise DependencyError (one line) when torch is older than TORCH_MIN."""
    if version is None:
        import torch

        version = torch.__version__
    if parse_version(version) < TORCH_MIN:
        need = f"{TORCH_MIN[0]}.{TORCH_MIN[1]}"
        raise DependencyError(f"torch {version} is too old: scalinglab needs torch>={need} (fused CPU AdamW, "
                              f"torch.optim.Adafactor); upgrade with `pip install 'torch>={need}'`")


check_torch()
