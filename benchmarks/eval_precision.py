"""The precision of an evaluation loss at the smoke preset's sizes: the document-clustered standard error that
every eval loss carries (data/shards.py `EvalSet.mean_and_se`), beside the within-document (stratified) SE, the
window-sampling noise of the fixed split, and the naive SE that treats windows as independent.

    python benchmarks/eval_precision.py DATA [--tokens 300000] [--eval-tokens 16384 65536]

DATA: a prepared dataset, e.g. the smoke preset's (`scalinglab data prepare --corpus default --tokenizer bpe-2048
--max-bytes 12000000 --out DATA`). Trains the smoke preset's smallest and largest models for --tokens, then
evaluates validation and test at each eval token count.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from scalinglab.training.config import RunConfig
from scalinglab.training.trainer import Trainer, lr_at

SHAPES = [dict(n_layer=1, d_model=16, n_head=2), dict(n_layer=3, d_model=96, n_head=4)]  # smoke: smallest, largest


def within_document_se(x: np.ndarray, ev) -> float:
    """SE of the weighted mean with documents as strata (every document evaluated): sum_g share_g^2 s_g^2 / k_g."""
    k = np.bincount(ev.doc)
    doc_mean = np.bincount(ev.doc, weights=x) / np.maximum(k, 1)
    pooled = np.var(x - doc_mean[ev.doc], ddof=1)
    length = np.bincount(ev.doc, weights=ev.weight)
    share = length / length.sum()
    var = 0.0
    for g in np.flatnonzero(k):
        xg = x[ev.doc == g]
        var += share[g] ** 2 * (np.var(xg, ddof=1) if xg.size > 1 else pooled) / xg.size
    return float(np.sqrt(var))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("--tokens", type=int, default=300_000)
    p.add_argument("--eval-tokens", type=int, nargs="+", default=[16_384, 65_536])
    p.add_argument("--n-ctx", type=int, default=64)
    args = p.parse_args()
    for shape in SHAPES:
        cfg = RunConfig(data=args.data, n_ctx=args.n_ctx, tokens=args.tokens, batch_size=32, n_evals=2,
                        eval_tokens=args.eval_tokens[0], **shape)
        trainer = Trainer(cfg)
        state = trainer.new_state()
        t0 = time.perf_counter()
        # train through the named steps, keeping the state (run() returns the curve, not the model)
        trainer.params = list(state.model.parameters())
        for _ in range(cfg.steps):
            trainer.train_step(state, state.model, lr_at(state.step, trainer.peak_lr, cfg.warmup, cfg.steps))
        print(f"{shape}  N={trainer.n:,}  trained {cfg.steps} steps in {time.perf_counter() - t0:.0f} s")
        model = state.model.eval()
        for et in args.eval_tokens:
            for split in ("validation", "test"):
                ev = trainer.data.eval_set(split, args.n_ctx, et)
                w = torch.from_numpy(ev.windows)
                with torch.no_grad():
                    x = torch.cat([model.loss(w[i : i + 64, :-1], w[i : i + 64, 1:], reduction="none").double().mean(1)
                                   for i in range(0, len(w), 64)]).numpy()
                loss, se = ev.mean_and_se(x)
                within = within_document_se(x, ev)
                naive = x.std(ddof=1) / np.sqrt(x.size)
                print(f"  eval_tokens {et:>7,} {split:<10} docs {ev.n_docs_evaluated}/{ev.n_docs}  loss {loss:.4f}  "
                      f"clustered SE {100 * se / loss:.2f}%  within-document SE {100 * within / loss:.2f}%  "
                      f"naive SE {100 * naive / loss:.2f}%")


if __name__ == "__main__":
    main()
