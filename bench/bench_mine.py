"""Mining throughput: our miner vs raw `git log -p --numstat` and a naive PyDriller loop.

A synthetic Python project history (>= 5,000 commits, written with `git fast-import`, which
takes seconds instead of the minutes `git commit` in a loop needs) has realistic edits:
functions added, modified and deleted across a few dozen modules, files renamed, a share of bot
commits, low-information messages, tiny typo fixes, large generated tables, and pull requests
merged with merge commits, by a handful of authors. On that one repository, in one run:

- raw git: `git log -p --numstat` over the whole history (the floor any git-based miner pays);
- naive PyDriller: `Repository(...).traverse_commits()` reading every commit's
  `modified_files` diffs (one `git diff` per commit);
- the miner: `harness.mine.stage.run` on a cold cache (everything: filters, diffs, secrets,
  dedup, split, FIM and docstring sources), then
- re-mining: the stage runner on the unchanged repository (`harness mine` again), `run` again
  with the per-commit cache warm, and `run` after a few new commits.

This machine's speed drifts by a third within minutes, so raw git and the cold miner are run
`--repeats` times in turn (each cold run in a fresh process with an empty cache: nothing from
an earlier run helps it) and the median ratio of adjacent pairs is reported.

    .venv/bin/python bench/bench_mine.py [--commits N] [--new K] [--workers W] [--repeats R]

Prints a table and writes bench/results/bench_mine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AUTHORS = [("Ada Lovelace", "ada@example.com"), ("Alan Turing", "alan@example.com"),
           ("Grace Hopper", "grace@example.com"), ("Edsger Dijkstra", "edsger@example.com"),
           ("Barbara Liskov", "barbara@example.com"), ("Donald Knuth", "don@example.com"),
           ("Ken Thompson", "ken@example.com"), ("Margaret Hamilton", "margaret@example.com")]
BOT = ("dependabot[bot]", "49699333+dependabot[bot]@users.noreply.github.com")
VERBS = ["compute", "parse", "validate", "normalise", "merge", "render", "collect", "score"]
NOUNS = ["invoice", "ledger", "payload", "token", "schedule", "report", "account", "window"]


def _function(rng: random.Random, name: str) -> list[str]:
    n = rng.randint(8, 40)
    body = [f"    {rng.choice(['total', 'acc', 'result'])} += {rng.randint(1, 99)} * value"
            f"  # {rng.choice(VERBS)} the {rng.choice(NOUNS)} step {i}" for i in range(n)]
    return [f"def {name}(value: int) -> int:",
            f'    """{rng.choice(VERBS).capitalize()} the {rng.choice(NOUNS)} for `value`."""',
            "    total = acc = result = 0", *body, "    return total + acc + result", "", ""]


def _render(funcs: dict[str, list[str]]) -> bytes:
    return ("\n".join(["\"\"\"Generated module.\"\"\"", "", ""]
                      + [line for f in funcs.values() for line in f])).encode()


def _data(payload: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(payload), payload)


def generate(dest: Path, n_commits: int, seed: int = 0) -> Path:
    """Create a repository at `dest` with `n_commits` commits (about 2% of them merges)."""
    rng = random.Random(seed)
    subprocess.run(["git", "init", "-q", "-b", "main", str(dest)], check=True)
    modules: dict[str, dict[str, list[str]]] = {f"pkg/mod_{k}.py": {} for k in range(40)}
    stream: list[bytes] = []
    ts, mark, counter, pr = 1_600_000_000, 0, 0, 0

    def commit(ref: str, who: tuple[str, str], msg: str, files: dict[str, bytes | None],
               parents: list[int]) -> int:
        nonlocal mark, ts
        mark += 1
        ts += rng.randint(600, 20_000)
        ident = f"{who[0]} <{who[1]}> {ts} +0000\n".encode()
        stream.append(f"commit {ref}\nmark :{mark}\n".encode() + b"author " + ident
                      + b"committer " + ident + _data(msg.encode()))
        stream.extend(f"{'from' if i == 0 else 'merge'} :{p}\n".encode() for i, p in enumerate(parents))
        for path, content in files.items():
            stream.append(f"D {path}\n".encode() if content is None
                          else f"M 100644 inline {path}\n".encode() + _data(content))
        stream.append(b"\n")
        return mark

    head = commit("refs/heads/main", AUTHORS[0], "Create the package skeleton",
                  {p: _render(f) for p, f in modules.items()}, [])
    while mark < n_commits:
        who = rng.choice(AUTHORS)
        path = rng.choice(list(modules))
        funcs = modules[path]
        roll = rng.random()
        counter += 1
        name = f"{rng.choice(VERBS)}_{rng.choice(NOUNS)}_{counter}"
        if roll < 0.02 and mark + 2 < n_commits:  # a pull request merged with a merge commit
            pr += 1
            funcs[name] = _function(rng, name)
            side = commit(f"refs/heads/pr{pr}", who, f"Add {name} for the {rng.choice(NOUNS)} "
                          f"pipeline\n\nCallers needed a {rng.choice(VERBS)} helper.",
                          {path: _render(funcs)}, [head])
            head = commit("refs/heads/main", AUTHORS[0], f"Merge pull request #{pr} from "
                          f"team/pr{pr}\n\nAdd {name}", {path: _render(funcs)}, [head, side])
            continue
        if roll < 0.05:
            who, msg = BOT, f"Bump {rng.choice(NOUNS)}lib from 1.{counter % 9}.0 to 1.{counter % 9 + 1}.0"
            funcs[name] = _function(rng, name)
        elif roll < 0.10 and funcs:
            victim = rng.choice(list(funcs))
            line = rng.randrange(3, len(funcs[victim]) - 3)
            funcs[victim][line] = funcs[victim][line].replace("step", "stage")
            msg = rng.choice(["fix typo", "wip", "update", f"Fix a typo in {victim}"])
        elif roll < 0.13 and len(funcs) > 3:
            victim = rng.choice(list(funcs))
            del funcs[victim]
            msg = f"Remove {victim}: nothing calls it any more\n\nDead since the refactor."
        elif roll < 0.15:
            new_path = f"pkg/renamed_{counter}.py"
            modules[new_path] = modules.pop(path)
            head = commit("refs/heads/main", who, f"Rename {path} to {new_path} for clarity",
                          {path: None, new_path: _render(modules[new_path])}, [head])
            continue
        elif roll < 0.17:
            funcs[name] = _function(rng, name) * 8
            msg = f"Add generated table {name}"
        elif roll < 0.45 and funcs:
            victim = rng.choice(list(funcs))
            lines = funcs[victim]
            for i in rng.sample(range(3, len(lines) - 3), min(len(lines) - 6, rng.randint(4, 20))):
                lines[i] = lines[i].replace("* value", f"* (value + {rng.randint(1, 9)})")
            msg = (f"Weight the {rng.choice(NOUNS)} terms of {victim} by an offset\n\n"
                   f"The {rng.choice(NOUNS)} totals were off by one {rng.choice(NOUNS)}.")
        else:
            funcs[name] = _function(rng, name)
            msg = (f"Add {name} to {rng.choice(VERBS)} {rng.choice(NOUNS)}s\n\n"
                   f"Used by the {rng.choice(NOUNS)} service (ticket {counter}).")
        if len(funcs) > 12:
            del funcs[next(iter(funcs))]
        head = commit("refs/heads/main", who, msg, {path: _render(funcs)}, [head])
    subprocess.run(["git", "-C", str(dest), "fast-import", "--quiet"], input=b"".join(stream),
                   check=True)
    subprocess.run(["git", "-C", str(dest), "checkout", "-q", "-f", "main"], check=True)
    return dest


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def raw_git(repo: Path) -> float:
    """Seconds for `git log -p --numstat` over the whole history, output read and discarded."""
    def go():
        with subprocess.Popen(["git", "-C", str(repo), "log", "-p", "--numstat", "--no-color"],
                              stdout=subprocess.PIPE) as p:
            while p.stdout.read(1 << 20):
                pass
    return _timed(go)[0]


def naive_pydriller(repo: Path) -> float:
    """Seconds for the loop most PyDriller users write: every commit, every file's diff."""
    from pydriller import Repository

    def go():
        n = 0
        for c in Repository(str(repo)).traverse_commits():
            for mf in c.modified_files:
                n += len(mf.diff)
        return n
    return _timed(go)[0]


def config(repo: Path, run_dir: Path, cache: Path, workers: int):
    from hydra import compose, initialize_config_dir

    from harness.paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"data.repo={repo}", f"run_dir={run_dir}",
                                            "run_name=bench", f"cache_dir={cache}",
                                            f"data.mine.workers={workers}"])


def cold_once(repo: Path, workers: int) -> float:
    """Seconds of one cold-cache miner run in a fresh process (imports not counted)."""
    return cold_run(repo, workers)[0]


def cold_run(repo: Path, workers: int, root: Path = ROOT) -> tuple[float, str]:
    """(seconds, digest of what it wrote) of one cold-cache run of the miner in `root` (this
    checkout, or another revision's: see bench_mine_real.py --baseline) in a fresh process,
    imports not counted. The digest covers records.jsonl, negatives.jsonl and mine_stats.json."""
    code = ("import sys, tempfile, time, hashlib; from pathlib import Path; "
            f"sys.path[:0] = [{str(root)!r}, {str(root / 'bench')!r}]; import bench_mine as b; "
            "import harness.mine.stage, datasketch, detect_secrets.core.scan; "
            "d = Path(tempfile.mkdtemp(prefix='bench-mine-cold-')); (d / 'out').mkdir(); "
            f"cfg = b.config(Path({str(repo)!r}), d / 'run', d / 'cache', {workers}); "
            "t = time.perf_counter(); harness.mine.stage.run(cfg, d / 'out'); "
            "t = time.perf_counter() - t; h = hashlib.sha256(); "
            "[h.update((d / 'out' / f).read_bytes()) for f in "
            "('records.jsonl', 'negatives.jsonl', 'mine_stats.json')]; "
            "print(t, h.hexdigest()[:16]); import shutil; shutil.rmtree(d)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=root)
    seconds, digest = res.stdout.split()[-2:]
    return float(seconds), digest


def miner(repo: Path, tmp: Path, name: str, cache: Path, workers: int) -> tuple[float, dict]:
    from harness.mine.stage import run

    out = tmp / name
    out.mkdir()
    return _timed(lambda: run(config(repo, tmp / f"run-{name}", cache, workers), out))


def stage_rerun(repo: Path, tmp: Path, cache: Path, workers: int) -> tuple[float, float]:
    """(first, second) seconds of `harness mine` twice on the same run dir (the second finds
    the stage up to date)."""
    from harness.stages import run_stage

    cfg = config(repo, tmp / "run-stage", cache, workers)
    return _timed(lambda: run_stage(cfg, "mine"))[0], _timed(lambda: run_stage(cfg, "mine"))[0]


def add_commits(repo: Path, k: int) -> None:
    """K new commits on top, each adding a new function to a module (as a developer would)."""
    rng = random.Random(1)
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ada Lovelace", "GIT_AUTHOR_EMAIL": "ada@example.com",
           "GIT_COMMITTER_NAME": "Ada Lovelace", "GIT_COMMITTER_EMAIL": "ada@example.com"}
    for i in range(k):
        path = repo / "pkg" / f"new_{i % 3}.py"
        with open(path, "a", encoding="utf-8") as f:
            f.write("\n".join(_function(rng, f"late_feature_{i}")))
        subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m",
                        f"Add late_feature_{i} for the new ledger rules\n\nTicket L{i}."],
                       check=True, env=env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--commits", type=int, default=5000)
    ap.add_argument("--new", type=int, default=20, help="commits added for the incremental run")
    ap.add_argument("--workers", type=int, default=0, help="miner processes (0: one per CPU)")
    ap.add_argument("--repeats", type=int, default=5, help="raw git / cold miner pairs")
    args = ap.parse_args()
    import datasketch  # noqa: F401  (imports are process start-up, not mining: load them first)
    import detect_secrets.core.scan  # noqa: F401

    import harness.mine.stage  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="bench-mine-") as tmp_:
        tmp = Path(tmp_)
        repo = tmp / "repo"
        t_gen, _ = _timed(lambda: generate(repo, args.commits))
        n = int(subprocess.run(["git", "-C", str(repo), "rev-list", "--count", "HEAD"],
                               capture_output=True, text=True, check=True).stdout)
        pairs = [(raw_git(repo), cold_once(repo, args.workers)) for _ in range(args.repeats)]
        t_git = statistics.median(g for g, _ in pairs)
        t_naive = naive_pydriller(repo)
        cache = tmp / "cache"
        _, stats = miner(repo, tmp, "cold", cache, args.workers)  # fills the cache
        t_mine = statistics.median(m for _, m in pairs)
        t_warm, _ = miner(repo, tmp, "warm", cache, args.workers)
        t_stage1, t_stage2 = stage_rerun(repo, tmp, tmp / "cache-stage", args.workers)
        add_commits(repo, args.new)
        t_incr, incr = miner(repo, tmp, "incremental", cache, args.workers)

    rows = [
        (f"raw git log -p --numstat (median of {args.repeats})", n, t_git),
        ("naive PyDriller loop", n, t_naive),
        (f"miner, cold cache (median of {args.repeats})", n, t_mine),
        ("miner again, per-commit cache warm", n, t_warm),
        (f"miner after {args.new} new commits", n + args.new, t_incr),
        ("harness mine, first", n, t_stage1),
        ("harness mine, unchanged repo", n, t_stage2),
    ]
    ratios = {
        "miner_vs_raw_git": statistics.median(g / m for g, m in pairs),
        "miner_vs_naive_pydriller": (n / t_mine) / (n / t_naive),
        "naive_pydriller_vs_raw_git": (n / t_naive) / (n / t_git),
        "warm_rerun_over_cold": t_warm / t_mine,
        "incremental_over_cold": t_incr / t_mine,
        "stage_unchanged_over_first": t_stage2 / t_stage1,
    }
    print(f"repository: {n} commits generated in {t_gen:.1f} s; {os.cpu_count()} CPUs\n")
    print(f"{'':46} {'commits':>8} {'seconds':>9} {'commits/s':>10}")
    for name, k, t in rows:
        print(f"{name:46} {k:>8} {t:>9.2f} {k / t:>10.0f}")
    print()
    for k, v in ratios.items():
        print(f"{k:32} {v:8.3f}")
    print(f"\nincremental run mined {incr['cache']['commits_mined']} commits, reused "
          f"{incr['cache']['commits_reused']}; kept {stats['kept']}")
    out = ROOT / "bench" / "results" / "bench_mine.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "commits": n, "new_commits": args.new, "cpus": os.cpu_count(),
        "python": platform.python_version(), "seconds": {name: t for name, _, t in rows},
        "ratios": ratios, "pairs_raw_git_vs_cold_miner": pairs,
        "kept": stats["kept"], "dropped": stats["dropped"],
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
