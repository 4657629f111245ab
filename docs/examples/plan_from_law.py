"""Plan a training run from a law: the compute-optimal model size N, tokens D, critical batch, steps and the loss
to expect for a budget, with 95% intervals when the law carries its bootstrap draws (a law fitted by
`fit_csv.py --out law.json` or `scalinglab fit ... --json`). Without a law file it plans with the published
Chinchilla constants, which carry no intervals.

    python docs/examples/plan_from_law.py 5.76e23 --law law.json
    python docs/examples/plan_from_law.py 3e3PF-days
"""

import argparse
import math

import scalinglab as sl


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("compute", help="budget in FLOP, or with a unit: 3e3PF-days")
    ap.add_argument("--law", default="chinchilla2022",
                    help="a fitted-law JSON file, or a published law: chinchilla2022, epoch2024, kaplan2020")
    args = ap.parse_args(argv)

    plan = sl.plan(args.compute, law=args.law)
    print(plan.summary())
    lo, hi = plan.ci["N_opt"]
    interval = f" (95% {lo:.3g} - {hi:.3g})" if math.isfinite(lo) and math.isfinite(hi) else ""
    print(f"train about {plan.N_opt:.3g} parameters{interval} on {plan.D_opt:.3g} tokens; "
          f"expect a loss of {plan.loss:.4f} nats per token")


if __name__ == "__main__":
    main()
