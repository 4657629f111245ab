"""Fit a scaling law to a CSV of your own runs and use it: Chinchilla's L(N, D) = E + A/N^alpha + B/D^beta with
95% bootstrap intervals, a prediction with its interval, and the law saved as JSON for `plan_from_law.py` (or
`scalinglab plan --law law.json`). No torch is imported.

    python docs/examples/fit_csv.py tests/data/chinchilla_points_epoch2024.csv --n "Model Size" \
        --c "Training FLOP" --loss loss --drop-highest-loss 5 --out law.json
"""

import argparse
import json
from pathlib import Path

import scalinglab as sl


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--n", default="N", help="column of the model size (parameters)")
    ap.add_argument("--d", default=None, help="column of the training tokens (or give --c)")
    ap.add_argument("--c", default=None, help="column of the training FLOP: D = C / (6 N)")
    ap.add_argument("--loss", default="loss")
    ap.add_argument("--drop-highest-loss", type=int, default=0)
    ap.add_argument("--resamples", type=int, default=200, help="bootstrap resamples")
    ap.add_argument("--out", help="write the fitted law here as JSON")
    args = ap.parse_args(argv)

    law = sl.fit_law(args.csv, form="chinchilla", n=args.n, d=args.d, c=args.c, loss=args.loss,
                     drop_highest_loss=args.drop_highest_loss, n_resamples=args.resamples, seed=0)
    print(law.summary())
    if not law.converged:
        raise SystemExit("the fit did not converge: its numbers are not to be used")

    N, D = 70e9, 1.4e12  # Chinchilla itself
    lo, hi = law.predict_interval(N=N, D=D)
    print(f"predicted loss at N = {N:.3g}, D = {D:.3g}: {law.predict(N=N, D=D)[0]:.4f} "
          f"(95% interval of the law {lo[0]:.4f} - {hi[0]:.4f})")
    if args.out:
        Path(args.out).write_text(json.dumps(law.to_dict()))
        print(f"law written to {args.out}")


if __name__ == "__main__":
    main()
