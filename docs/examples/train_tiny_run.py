"""Train one tiny model and read back what the run store recorded: prepare a dataset from the Python standard
library's own sources (no download), train a 1-layer Transformer on 100k tokens, then list the run and its
test-loss curve from the SQLite store. About a minute on one CPU core.

    python docs/examples/train_tiny_run.py OUT_DIR
"""

import argparse
from pathlib import Path

import scalinglab as sl


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="a directory for the dataset and the store")
    args = ap.parse_args(argv)
    out = Path(args.out)

    data = sl.prepare_data("stdlib", out / "data", tokenizer="bpe-512", max_bytes=400_000)
    config = sl.RunConfig(data=str(data), n_layer=1, d_model=32, n_head=2, n_ctx=32, batch_size=8,
                          tokens=100_000, n_evals=4, eval_tokens=4096, device="cpu", threads=1, name="tiny")
    store = sl.RunStore(out / "runs.sqlite")
    try:
        result = sl.train(config, store=store)
        print(f"run {result.run_id}: {result.status}, final test loss {result.final_test_loss:.4f} nats/token")
        runs = store.runs()
        print(runs[["run_id", "name", "status", "N", "D", "C", "final_test_loss"]].to_string(index=False))
        curve = store.evals([result.run_id])
        print(curve[["step", "eval_set", "loss"]].to_string(index=False))
    finally:
        store.close()


if __name__ == "__main__":
    main()
