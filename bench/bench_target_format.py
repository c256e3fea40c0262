"""Which target format trains the better change model: search_replace, region or diff
(`data.mine.target_format`).

The formats say the same change in different words, so their held-out losses are over
different texts and cannot be compared. Each format's candidate is scored instead by the code
its replies make (harness/mine/edits.py): on held-out change requests whose prompt (request and
code shown) is the same in every format, its greedy reply is applied to the code shown and
compared with the true change:

- applies: the reply parses and every edit lands on the code shown; changes the code: and
  the code it makes is not the code shown;
- exact: the code made is the true new code;
- edit similarity: difflib ratio of the lines the reply removes and adds to the true ones (0
  when it makes no edit or does not apply), with paired bootstrap CIs between formats.

Each candidate: `harness train` on the repository with that format, change pairs only (commit
and pull-request pairs; docstring and source-file examples off), the demo's model, steps,
batch, learning rate and 512-token examples. Runs are kept in --workdir, so a rerun skips
the training already done.

    .venv/bin/python bench/bench_target_format.py --repo /path/to/clone [--rev REV]
        [--steps 16] [--requests 40] [--model smollm2-135m] [--workdir DIR]

Writes bench/results/bench_target_format.json and, per request, .rows.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _results import write_result  # noqa: E402

from harness.mine import edits  # noqa: E402
from harness.mine.pairs import FORMATS  # noqa: E402

HARNESS = [sys.executable, "-m", "harness.cli"]
CHANGE_KINDS = ("commit", "pr")


def train(workdir: Path, fmt: str, args) -> Path:
    """The format's run directory, trained (the harness skips what is up to date)."""
    run = f"fmt-{fmt}"
    cmd = [*HARNESS, "train", f"run_name={run}", f"data.repo={args.repo}", f"data.rev={args.rev}",
           f"model={args.model}", f"data.mine.target_format={fmt}", "data.mine.fim_extensions=[]",
           "data.mine.docstring.enabled=false", f"data.format.max_length={args.max_length}",
           f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}", f"train.lr={args.lr}",
           "train.report_to=none", f"train.save_steps={args.steps}", f"seed={args.seed}"]
    print(f"[{fmt}] training: {' '.join(cmd[3:])}", flush=True)
    t0 = time.time()
    with open(workdir / f"{run}.log", "w") as log:
        subprocess.run(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, check=True)
    print(f"[{fmt}] trained in {time.time() - t0:.0f} s → {workdir / 'runs' / run}", flush=True)
    return workdir / "runs" / run


def held_out(run: Path) -> dict[str, dict]:
    """The format's held-out change pairs by prompt."""
    out = {}
    with open(run / "mine" / "records.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if r["split"] == "test" and r["kind"] in CHANGE_KINDS:
                out.setdefault(r["instruction"], r)
    return out


def generate(run: Path, prompts: list[str], max_new: int, batch_size: int) -> tuple[list[str], float]:
    """The candidate's greedy replies (chat template, the run's system prompt) and seconds."""
    from omegaconf import OmegaConf

    from harness.eval.engines.hf import HFEngine
    from harness.format.chat import end_of_turn_id
    from harness.models.load import load_model, load_tokenizer

    manifest = json.loads((run / "train" / "manifest.json").read_text())
    cfg = OmegaConf.create(manifest["config"])
    tokenizer = load_tokenizer(manifest["base_model"], cfg.model)
    model = load_model(manifest["base_model"], cfg.model, adapter=str(run / "train" / "adapter"))
    system = cfg.data.format.system_prompt
    chats = [[{"role": "system", "content": system}, {"role": "user", "content": p}] for p in prompts]
    ids = [list(tokenizer.apply_chat_template(c, tokenize=True, return_dict=True,
                                              add_generation_prompt=True)["input_ids"]) for c in chats]
    eot = end_of_turn_id(tokenizer, [*chats[0], {"role": "assistant", "content": "x"}])
    t0 = time.time()
    out = HFEngine(model, tokenizer, batch_size, max_new).generate(ids, eos_token_ids=[eot], desc=run.name)
    return [g.outputs[0] for g in out], time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", required=True, help="a local git clone (a real public history)")
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--requests", type=int, default=40, help="held-out change requests replied to")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--gen-batch-size", type=int, default=8)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench-target-format"))
    args = ap.parse_args()
    args.repo = str(Path(args.repo).resolve())
    args.rev = subprocess.run(["git", "-C", args.repo, "rev-parse", args.rev], capture_output=True,
                              text=True, check=True).stdout.strip()
    args.workdir.mkdir(parents=True, exist_ok=True)

    runs = {fmt: train(args.workdir, fmt, args) for fmt in FORMATS}
    pairs = {fmt: held_out(run) for fmt, run in runs.items()}
    # the same prompt in every format, and a true reply the generation budget can hold
    from harness.models.load import load_tokenizer

    tokenizer = load_tokenizer(json.loads((runs["region"] / "train" / "manifest.json").read_text())["base_model"])
    common = sorted(set.intersection(*(set(p) for p in pairs.values())))
    fits = [p for p in common if all(len(tokenizer(pairs[f][p]["response"])["input_ids"]) < args.max_new_tokens
                                     for f in FORMATS)]
    chosen = sorted(random.Random(args.seed).sample(fits, min(args.requests, len(fits))))
    print(f"{len(common)} held-out change requests in all formats, {len(fits)} with a true reply under "
          f"{args.max_new_tokens} tokens; replying to {len(chosen)}", flush=True)
    if not chosen:
        sys.exit("no held-out change request to reply to: raise --max-new-tokens or use a history with "
                 "more commits after its time cutoff")

    scores, per_format, all_rows = {}, {}, []
    for fmt, run in runs.items():
        replies, seconds = generate(run, chosen, args.max_new_tokens, args.gen_batch_size)
        rows = []
        for prompt, reply in zip(chosen, replies, strict=True):
            truth = edits.result(prompt, pairs[fmt][prompt]["response"], fmt)
            made = edits.result(prompt, reply, fmt)
            rows.append({"format": fmt, "applies": made is not None,
                         "edits": made is not None and made != edits.before(prompt), "exact": made == truth,
                         "edit_similarity": edits.edit_similarity(edits.before(prompt), made, truth),
                         "request": prompt, "reply": reply, "truth": pairs[fmt][prompt]["response"]})
        all_rows += rows
        scores[fmt] = [r["edit_similarity"] for r in rows]
        manifest = json.loads((run / "train" / "manifest.json").read_text())
        per_format[fmt] = {
            "applies": sum(r["applies"] for r in rows), "edits": sum(r["edits"] for r in rows),
            "exact": sum(r["exact"] for r in rows),
            "edit_similarity": sum(scores[fmt]) / len(rows), "n": len(rows),
            "held_out_loss": manifest.get("eval_loss"), "train_loss": manifest.get("train_loss"),
            "train_seconds": manifest.get("train_seconds"), "generation_seconds": round(seconds, 1),
            "examples": [r["reply"][:600] for r in rows[:3]]}
        print(f"[{fmt}] applies {per_format[fmt]['applies']}/{len(rows)}, changes the code "
              f"{per_format[fmt]['edits']}, exact {per_format[fmt]['exact']}, "
              f"edit similarity {per_format[fmt]['edit_similarity']:.3f}, held-out loss "
              f"{per_format[fmt]['held_out_loss']:.3f} (its own format's text)", flush=True)

    from harness.gate.stats import paired_bootstrap_ci

    differences = {}
    for i, a in enumerate(FORMATS):
        for b in FORMATS[i + 1:]:
            lo, hi = paired_bootstrap_ci(scores[b], scores[a])
            differences[f"{a} - {b}"] = {"edit_similarity": per_format[a]["edit_similarity"]
                                         - per_format[b]["edit_similarity"], "ci95": [lo, hi]}
            print(f"{a} - {b}: {differences[f'{a} - {b}']['edit_similarity']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    out = write_result("bench_target_format", {
        "repo": args.repo, "rev": args.rev, "model": args.model, "steps": args.steps,
        "batch_size": args.batch_size, "lr": args.lr, "max_length": args.max_length,
        "requests": len(chosen), "held_out_in_all_formats": len(common), "formats": per_format,
        "differences": differences})
    with open(out.with_suffix(".rows.jsonl"), "w") as f:  # every request, reply and score, to read
        f.writelines(json.dumps(r) + "\n" for r in all_rows)
    print(f"→ {out} (+ {out.with_suffix('.rows.jsonl').name})")


if __name__ == "__main__":
    main()
