"""Mining speed on real histories: the miner (cold cache, fresh process) vs raw
`git log -p --numstat` over the same history, alternated `--repeats` times per repository.

A synthetic history overstated the ratio (0.58x there, 0.20-0.39x on three real ones): real
histories have larger files, longer messages and more merges. Give local clones of real
repositories (e.g. `git clone https://github.com/pallets/click`); nothing is fetched here.

    .venv/bin/python bench/bench_mine_real.py /path/to/click /path/to/requests [--repeats 3]
        [--baseline REV]

Reports per repository the median of each side and the median ratio of adjacent runs (raw git
seconds / miner seconds: 1.0 = as fast as raw git), into bench/results/bench_mine_real.json.
With `--baseline REV` the miner of that git revision (extracted to a temporary directory) runs
in the same rounds, in alternating order with this checkout's, so a before/after comparison
shares the machine's load; both digests of what they wrote are reported, and must match when a
change is not meant to change the output.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result
from bench_mine import ROOT, cold_run, raw_git


def checkout(rev: str, dest: Path) -> Path:
    """The miner's files (and what it reads: its configs, the benchmark datasets) at `rev`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "harness", "conf", "bench",
                              "datasets/benchmarks"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def measure(repo: Path, repeats: int, workers: int, baseline: Path | None) -> dict:
    rounds = []
    for i in range(repeats):  # alternate: this machine's speed drifts within minutes
        t_git = raw_git(repo)
        if baseline is None:
            rounds.append({"git": t_git, "miner": cold_run(repo, workers)})
            continue
        order = [("miner", ROOT), ("baseline", baseline)][::1 if i % 2 else -1]
        rounds.append({"git": t_git, **{name: cold_run(repo, workers, root) for name, root in order}})
    commits = int(subprocess.run(["git", "-C", str(repo), "rev-list", "--count", "HEAD"],
                                 capture_output=True, text=True, check=True).stdout)
    out = {"commits": commits, "raw_git_s": statistics.median(r["git"] for r in rounds)}
    for side in ("baseline", "miner") if baseline else ("miner",):
        ratios = [r["git"] / r[side][0] for r in rounds]
        out[side] = {"seconds": statistics.median(r[side][0] for r in rounds),
                     "ratio_median": statistics.median(ratios), "ratios": [round(x, 3) for x in ratios],
                     "digests": sorted({r[side][1] for r in rounds})}
    if baseline:
        out["speedup_median"] = statistics.median(r["baseline"][0] / r["miner"][0] for r in rounds)
        out["same_output"] = out["baseline"]["digests"] == out["miner"]["digests"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repos", nargs="+", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--baseline", help="a git revision of this repository whose miner runs alongside")
    args = ap.parse_args()
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-mine-baseline-") as tmp:
        baseline = checkout(args.baseline, Path(tmp)) if args.baseline else None
        for repo in args.repos:
            out[repo.name] = r = measure(repo.resolve(), args.repeats, args.workers, baseline)
            sides = [s for s in ("baseline", "miner") if s in r]
            print(f"{repo.name}: {r['commits']} commits, raw git {r['raw_git_s']:.2f} s; " + "; ".join(
                f"{s} {r[s]['seconds']:.2f} s, ratio {r[s]['ratio_median']:.3f}x (rounds {r[s]['ratios']})"
                for s in sides) + (f"; speedup {r['speedup_median']:.2f}x, same output: {r['same_output']}"
                                   if baseline else ""), flush=True)
    print(write_result("bench_mine_real", {"repeats": args.repeats, "baseline": args.baseline, "repos": out}))


if __name__ == "__main__":
    main()
