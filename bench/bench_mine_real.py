"""Mining speed on real histories: the miner (cold cache, fresh process) vs raw
`git log -p --numstat` over the same history, alternated `--repeats` times per repository.

A synthetic history overstated the ratio (0.58x there, 0.20-0.39x on three real ones): real
histories have larger files, longer messages and more merges. Give local clones of real
repositories (e.g. `git clone https://github.com/pallets/click`); nothing is fetched here.

    .venv/bin/python bench/bench_mine_real.py /path/to/click /path/to/requests [--repeats 3]

Reports per repository the median of each side and the median ratio of adjacent pairs
(raw git seconds / miner seconds: 1.0 = as fast as raw git), into
bench/results/bench_mine_real.json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result
from bench_mine import cold_once, raw_git


def measure(repo: Path, repeats: int, workers: int) -> dict:
    pairs = []
    for _ in range(repeats):  # alternate: this machine's speed drifts within minutes
        pairs.append((raw_git(repo), cold_once(repo, workers)))
    commits = int(subprocess.run(["git", "-C", str(repo), "rev-list", "--count", "HEAD"],
                                 capture_output=True, text=True, check=True).stdout)
    ratios = [g / m for g, m in pairs]
    return {"commits": commits, "raw_git_s": statistics.median(g for g, _ in pairs),
            "miner_cold_s": statistics.median(m for _, m in pairs),
            "ratio_median": statistics.median(ratios), "ratios": [round(r, 3) for r in ratios]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repos", nargs="+", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    out = {}
    for repo in args.repos:
        out[repo.name] = r = measure(repo.resolve(), args.repeats, args.workers)
        print(f"{repo.name}: {r['commits']} commits, raw git {r['raw_git_s']:.2f} s, miner {r['miner_cold_s']:.2f} s, "
              f"ratio {r['ratio_median']:.3f}x (pairs {r['ratios']})", flush=True)
    print(write_result("bench_mine_real", {"repeats": args.repeats, "repos": out}))


if __name__ == "__main__":
    main()
