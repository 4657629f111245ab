"""What a local worker pays once at its start, paid instead once per study: the forkserver that sweep/local.py starts
its workers from imports this module, so each worker is a fork of a process that already holds torch (4-5 s to
import on a small machine), scalinglab's training modules, and torch._dynamo (which the first optimizer's
constructor imports: about 4 s more). Nothing here computes or starts a thread pool (torch's intra-op threads
start at a worker's first parallel operation), so the forked state is that of a fresh import."""

import atexit
import os
import sys

import torch

import scalinglab.training.grouped  # noqa: F401
import scalinglab.training.trainer  # noqa: F401

torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])  # imports torch._dynamo


def _exit_now() -> None:
    """The forkserver ends when its driver does; it then leaves at once instead of tearing torch down (~0.6 s),
    so its workers (which die with it) go as soon as the driver has gone. A worker registers its own exit."""
    sys.stderr.flush()
    os._exit(0)


atexit.register(_exit_now)
