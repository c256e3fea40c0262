"""The report stage: every upstream output → `reports/<run>/report.md` + `evidence.json`.

The evidence file carries every number in the report plus the hashes that tie them to their
inputs (mined records, dataset, adapter, frozen thresholds, benchmark files), so a reader
can check which data and which model produced a verdict.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from harness.eval.benchmarks import SHA256 as BENCHMARK_SHA256
from harness.io import atomic_write_json, atomic_write_text, read_json, read_jsonl, sha256_file
from harness.stages import require_output

log = logging.getLogger(__name__)


def _f(x, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_f(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def collect(cfg: DictConfig) -> dict:
    mine, fmt, train, ev, gate = (require_output(cfg, s) for s in ("mine", "format", "train", "eval", "gate"))
    manifest = read_json(train / "manifest.json")
    return {
        "run": cfg.run_name,
        "verdict": read_json(gate / "verdict.json"),
        "metrics": read_json(ev / "metrics.json"),
        "mine_stats": read_json(mine / "mine_stats.json"),
        "dataset_card": read_json(fmt / "dataset_card.json"),
        "training": {k: v for k, v in manifest.items() if k != "config"},
        "loss_curve": [{"step": h["step"], "loss": h["loss"]}
                       for h in read_jsonl(train / "train_log.jsonl") if "loss" in h],
        "hashes": {
            "records_sha256": sha256_file(mine / "records.jsonl"),
            "dataset_hash": manifest["dataset_hash"],
            "tokenizer_hash": manifest["tokenizer_hash"],
            "adapter_sha256": manifest["adapter_sha256"],
            "thresholds_sha256": read_json(gate / "verdict.json")["thresholds_sha256"],
            "benchmarks_sha256": BENCHMARK_SHA256,
        },
    }


def render(ev: dict) -> str:
    v, m = ev["verdict"], ev["metrics"]
    out = [f"# Run {ev['run']}: **{v['decision'].upper()}**\n\n",
           f"Thresholds sha256 `{v['thresholds_sha256'][:16]}…`, frozen at "
           f"{v['thresholds_frozen_at']} (before eval)"
           + (" — **changed after eval: verdict forced to no-deploy**" if v["thresholds_changed_after_eval"] else "")
           + ".\n", "\n## Gate\n\n"]
    out.append(_table(["check", "metric", "rule", "threshold", "n", "base", "candidate", "delta",
                       "95% CI", "status"],
                      [[c["name"], c["metric"], c["rule"], c["fail"], c["n"], c.get("base"),
                        c.get("candidate"), c.get("delta"),
                        "[{}, {}]".format(*(_f(x) for x in c["ci"])) if "ci" in c else "n/a",
                        c["status"]] for c in v["checks"]]))
    out.append("\n## Forgetting checks (pass@1, greedy)\n\n")
    rows = [[t, m[t]["base"]["pass@1"], m[t]["candidate"]["pass@1"], m[t]["base"]["n"]]
            for t in ("humaneval", "mbpp") if t in m]
    out.append(_table(["task", "base", "candidate", "problems"], rows) if rows else "Not run.\n")
    out.append("\n## FIM on held-out holes\n\n")
    if "fim" in m:
        keys = ("exact_match", "first_line_exact_match", "edit_similarity")
        out.append(_table(["model", *keys, "holes"],
                          [[lb, *(m["fim"][lb][k] for k in keys), m["fim"][lb]["n"]]
                           for lb in ("base", "candidate")]))
    else:
        out.append("Not run (no held-out source files).\n")
    out.append("\n## Judge\n\n")
    if "judge" in m:
        j = m["judge"]
        crit = sorted(j["base"]["criteria"])
        out.append(_table(["criterion", "base", "candidate", "base parse failures", "candidate parse failures"],
                          [[c, j["base"]["criteria"][c]["weighted_mean"] or j["base"]["criteria"][c]["mean"],
                            j["candidate"]["criteria"][c]["weighted_mean"] or j["candidate"]["criteria"][c]["mean"],
                            j["base"]["criteria"][c]["parse_failure_rate"],
                            j["candidate"]["criteria"][c]["parse_failure_rate"]] for c in crit]))
    else:
        out.append("Not run (no held-out change requests).\n")
    ms, card, tr = ev["mine_stats"], ev["dataset_card"], ev["training"]
    out.append("\n## Data\n\n")
    out.append(f"Mined `{ms['repo']}` at `{ms['head'][:12]}`: {ms['commits_seen']} commits seen, "
               f"cutoff {ms['cutoff']}.\n\n")
    out.append(_table(["kept (kind/split)", "records"], [[k, n] for k, n in ms["kept"].items()]))
    out.append("\n" + _table(["dropped by filter", "commits"], [[k, n] for k, n in sorted(ms["dropped"].items())])
               if ms["dropped"] else "\nNo commit was dropped.\n")
    out.append(f"\nTraining examples: {card['examples']}, {card['tokens']} tokens "
               f"({card['supervised_tokens']} supervised), max length {card['max_length']}.\n")
    out.append("\n## Training\n\n")
    out.append(_table(["backend", "method", "steps", "first loss", "last loss", "tokens seen", "seconds"],
                      [[tr["backend"], tr["method"], tr["global_step"], tr["first_loss"], tr["last_loss"],
                        tr["tokens_seen"], tr["wall_seconds"]]]))
    out.append("\n## Provenance\n\n")
    out.append(_table(["what", "hash"], [[k, v if isinstance(v, str) else ", ".join(
        f"{n}: {h[:12]}…" for n, h in v.items())] for k, v in ev["hashes"].items()]))
    out.append("\nVersions: " + ", ".join(f"{k} {v}" for k, v in tr["versions"].items() if v) + ".\n")
    s = m["settings"]
    out.append(f"\nEval settings (identical for both models): engine {s['engine']}, {s['decoding']}, "
               f"batch size {s['batch_size']}, max new tokens {s['max_new_tokens']}; sandbox "
               f"mode {m['sandbox']['mode']}.\n")
    return "".join(out)


def run(cfg: DictConfig, out: Path) -> dict:
    evidence = collect(cfg)
    report_dir = Path(cfg.report_dir)
    atomic_write_json(report_dir / "evidence.json", evidence)
    atomic_write_text(report_dir / "report.md", render(evidence))
    log.info("report → %s", (report_dir / "report.md").resolve())
    return {"report": str((report_dir / "report.md").resolve()), "decision": evidence["verdict"]["decision"]}
