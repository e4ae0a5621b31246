"""How well the spring network ranks candidates the way LAMMPS does (``nanoto sample --screen``).

Reads a ``verify.json`` of unscreened samples (``nanoto sample ... --screen 1``, which stores
the spring-network stiffness ``spring_k`` of every candidate) and prints, over the
conditions with at least 4 valid candidates: the median Spearman rank correlation between
spring_k and the LAMMPS K_sym within a condition, and what keeping the best 1/M of each
condition by spring_k would have given (median K / K_frontier, share >= 0.97) against
keeping all. A count of candidates, not a time: one run is the figure.

    python bench/screen_rank.py runs/verify_aug/verify.json --keep 2 4
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np
from scipy.stats import spearmanr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("verify_json")
    ap.add_argument("--keep", type=int, nargs="+", default=[2, 4], metavar="M",
                    help="keep the best 1/M of each condition by spring_k")
    args = ap.parse_args()
    with open(args.verify_json) as f:
        report = json.load(f)
    by_group: dict[int, list[dict]] = defaultdict(list)
    for c in report["candidates"]:
        by_group[c["group"]].append(c)
    rhos = []
    kept: dict[int, list[dict]] = {m: [] for m in [1, *args.keep]}
    for cands in by_group.values():
        scored = [c for c in cands if c.get("spring_k") is not None]
        if len(scored) < len(cands):
            raise SystemExit(f"{args.verify_json}: candidates without spring_k; sample with a nanoto that stores it")
        valid = [c for c in scored if c["valid"] and c["k_sym"] is not None]
        if len(valid) >= 4:
            rho = spearmanr([c["spring_k"] for c in valid], [c["k_sym"] for c in valid]).statistic
            if np.isfinite(rho):
                rhos.append(rho)
        # what the screen keeps: valid by decreasing spring_k, invalid ones last (as ml_screen.keep_stiffest)
        order = sorted(scored, key=lambda c: (not (c["valid"] and c["spring_k"] > 0), -c["spring_k"]))
        for m in kept:
            kept[m].extend(order[: max(1, len(order) // m)])
    print(f"{args.verify_json}: {len(report['candidates'])} candidates, {len(by_group)} conditions")
    print(f"Spearman(spring_k, K_sym) within a condition: median {np.median(rhos):.3f} over {len(rhos)} conditions "
          f"(quartiles {np.percentile(rhos, 25):.3f} / {np.percentile(rhos, 75):.3f})")
    print(f"{'keep':>8} {'n':>5} {'valid':>7} {'median ratio':>13} {'>= 0.97':>8}")
    for m, cands in kept.items():
        ratios = np.array([c["ratio"] for c in cands if c["valid"] and c["ratio"] is not None])
        valid = np.mean([c["valid"] for c in cands])
        print(f"{'1/' + str(m):>8} {len(cands):>5} {valid:>7.1%} {np.median(ratios):>13.3f} "
              f"{np.mean(ratios >= 0.97):>8.1%}")  # over valid candidates with a frontier, as verify


if __name__ == "__main__":
    main()
