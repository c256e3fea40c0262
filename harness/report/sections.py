"""What a run's report says, section by section, as document blocks built from the evidence
(collect.py). Sections whose inputs are absent say so in one line instead of disappearing, so a
reader can tell "not run" from "forgotten"."""

from __future__ import annotations

from harness.report import plots
from harness.report.document import (
    Bullets,
    Compare,
    Document,
    Figure,
    Heading,
    Para,
    Side,
    Table,
    fmt,
)

MODELS = ("base", "candidate")


def _ci(ci: list | None) -> str:
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "n/a"


def _figure(name: str, png: bytes | None, caption: str) -> Figure | None:
    return Figure(name, png, caption) if png else None


def judge_caveat(ev: dict) -> list:
    """First lines of the report when the judge graded itself: the offline default judges with
    the base model, the model under test (the candidate is that model plus an adapter)."""
    settings = (ev.get("judge") or {}).get("settings") or {}
    if not settings.get("judge_is_model_under_test"):
        return []
    return [Para("**The LLM judge is the model under test** (the base model, served on loopback: "
                 "the offline default). It graded its own answers and its fine-tuned version's, "
                 "so expect self-preference and weak judgements; see its measured reliability in "
                 "the judge section, and use a stronger independent judge (`judge=openai` or a "
                 "judge.base_url) for decisions.")]


def summary(ev: dict) -> list:
    v = ev["verdict"]
    out = [*judge_caveat(ev), Para(f"Gate decision: **{v['decision'].upper()}**. Thresholds sha256 "
                f"`{str(v.get('thresholds_sha256'))[:16]}…`, frozen at "
                f"{v.get('thresholds_frozen_at', 'n/a')}, before eval.")]
    if v.get("thresholds_changed_after_eval"):
        out.append(Para("**The thresholds changed after eval; the decision is forced to "
                        "no-deploy.**"))
    if v.get("reasons"):
        out.append(Bullets([str(r) for r in v["reasons"]]))
    doubted = [c for c in v.get("checks") or [] if "status_if_reliable" in c]
    if doubted:
        out.append(Para("**The judge was unreliable on this run's known answers**, so these "
                        "judge-based checks could neither pass nor fail: " + ", ".join(
                            f"{c['name']} (its scores alone: {c['status_if_reliable']})"
                            for c in doubted) + "."))
    return out


def gate(ev: dict) -> list:
    checks = ev["verdict"].get("checks") or []
    rows = []
    for c in checks:
        rel = c.get("statistic") == "relative_gain"
        rows.append([c["name"], c["metric"], c["rule"], c.get("fail"), c.get("warn"), c.get("n"),
                     c.get("base"), c.get("candidate"),
                     "relative gain" if rel else "difference",
                     c.get("relative_gain") if rel else c.get("delta"),
                     _ci(c.get("relative_gain_ci") if rel else c.get("ci")),
                     (c.get("mcnemar") or {}).get("p_value"), c["status"]])
    conf = (ev["verdict"].get("bootstrap") or {}).get("confidence", 0.95)
    return [Heading("Gate"),
            Para(f"Each check compares the {conf:.0%} paired-bootstrap CI of its statistic "
                 f"(candidate vs base, per item) with its margin: `max_drop` may lose at most "
                 f"`fail`, `max_rel_drop` at most `fail` × base, `min_gain` / `min_rel_gain` must gain at "
                 f"least `fail` (× base for the relative one)."),
            Table(["check", "metric", "rule", "fail", "warn", "n", "base", "candidate",
                   "statistic", "value", "CI", "McNemar p", "status"], rows),
            Bullets([f"**{c['name']}** ({c['status']}): {c.get('reason', '')}" for c in checks]),
            *power(checks, conf),
            _figure("gate", plots.gate(checks), "Each check's CI (bar) and point estimate (dot) "
                    "against its margin (dashed)")]


def power(checks: list[dict], conf: float) -> list:
    """What each pass/fail check could resolve with its items (harness/gate/power.py), beside
    the noise floor: the base model's own flips between two innocuous runs, when measured."""
    rows = [[c["name"], p["n"], p["flips"], p["half_width"], p["mde"], _margin(c, p),
             {True: "yes", False: "no", None: "n/a"}[p["decidable"]],
             (f"{p['noise_floor']['flips']} of {p['noise_floor']['n']}" if p.get("noise_floor")
              else "not measured")]
            for c in checks if (p := c.get("power"))]
    if not rows:
        return []
    return [Para(f"Power: with the flips observed, the {conf:.0%} CI of a check's difference is "
                 f"± the half-width below at no net change; a margin below it cannot pass. MDE: "
                 f"the shift detected with 80% power. Noise floor: items on which the base "
                 f"model disagrees with itself when only the batch size changes "
                 f"(`eval.noise_floor.enabled`)."),
            Table(["check", "n", "flipped", "CI half-width", "MDE", "margin", "can pass",
                   "noise floor"], rows)]


def _margin(check: dict, p: dict) -> str | float | None:
    """The margin in the difference's units; a relative one also says what it is relative to."""
    if check.get("statistic") != "relative_gain" or p.get("margin") is None:
        return p.get("margin", check.get("fail"))
    return f"{p['margin']:.3f} ({check['fail']:g} × base)"


def codegen(ev: dict, max_flips: int) -> list:
    out: list = [Heading("Code generation: pass@1 (forgetting checks)")]
    rates = ev.get("pass_at_1") or {}
    if not rates:
        return [*out, Para("Not run (HumanEval and MBPP disabled).")]
    rows = []
    for task, r in rates.items():
        flipped = ev["flips"].get(task, [])
        rows.append([task, r["base"]["pass@1"], _ci(r["base"]["ci"]), r["candidate"]["pass@1"],
                     _ci(r["candidate"]["ci"]), r["base"]["n"],
                     sum(f["change"] == "fixed" for f in flipped),
                     sum(f["change"] == "broken" for f in flipped)])
    out += [Para("Intervals: Wilson 95% over samples (one greedy sample per problem by default)."),
            Table(["task", "base", "base CI", "candidate", "candidate CI", "problems", "fixed",
                   "broken"], rows),
            _figure("pass_at_1", plots.pass_rates(rates), "pass@1 with Wilson intervals")]
    for task, flipped in ev["flips"].items():
        if not flipped:
            continue
        out.append(Heading(f"{task}: problems that flipped ({len(flipped)})", 3))
        if len(flipped) > max_flips:
            out.append(Para(f"The first {max_flips} are shown (regressions first); all are in "
                            f"evidence.json."))
        for f in flipped[:max_flips]:
            context, label = ((f["prompt"], "prompt") if f.get("prompt")
                              else (f.get("expected"), "expected middle"))
            out.append(Compare(f"{f['item_id']}: {f['change']}",
                               Side(_side_label("base", f["base"]), f["base"]["output"] or ""),
                               Side(_side_label("candidate", f["candidate"]),
                                    f["candidate"]["output"] or ""), context, label))
    return out


def _side_label(label: str, row: dict) -> str:
    if row["passed"]:
        return f"{label}: passed"
    error = (row.get("error") or "").strip().splitlines()
    return f"{label}: {row.get('status') or 'failed'}" + (f" ({error[-1][:80]})" if error else "")


def fim(ev: dict) -> list:
    out: list = [Heading("FIM on held-out holes")]
    f = ev.get("fim")
    if not f:
        return [*out, Para("Not run (disabled, or no held-out source files).")]
    return [*out, Table(["model", "exact match", "exact match CI", "first-line exact match",
                         "edit similarity", "holes"],
                        [[label, f[label]["exact_match"], _ci(f[label]["exact_match_ci"]),
                          f[label]["first_line_exact_match"], f[label]["edit_similarity"],
                          f[label]["n"]] for label in MODELS])]


def judge(ev: dict) -> list:
    out: list = [Heading("LLM judge")]
    j = ev.get("judge")
    if not j:
        return [*out, Para("Not run (disabled, or no held-out change requests).")]
    rubric, settings, usage = j.get("rubric") or {}, j.get("settings") or {}, j.get("usage") or {}
    out.append(Para(f"Rubric `{rubric.get('name')}` v{rubric.get('version')}, judge "
                    f"`{settings.get('model')}` ({settings.get('output')} output); "
                    f"{usage.get('calls', 'n/a')} calls ({usage.get('cached_calls', 'n/a')} from "
                    f"the cache), {usage.get('prompt_tokens', 'n/a')} prompt + "
                    f"{usage.get('completion_tokens', 'n/a')} completion tokens, "
                    f"${fmt(usage.get('spent_usd'), 4)} spent."))
    rows = []
    for name, by in sorted(j["criteria"].items()):
        b, c = by.get("base") or {}, by.get("candidate") or {}
        rows.append([name, b.get("n"), b.get("mean"), c.get("mean"), b.get("weighted_mean"),
                     c.get("weighted_mean"), b.get("parse_failure_rate"),
                     c.get("parse_failure_rate")])
    out += [Table(["criterion", "answers", "base mean", "candidate mean", "base weighted",
                   "candidate weighted", "base parse failures", "candidate parse failures"], rows),
            *judge_reliability(ev),
            _figure("judge_scores", plots.judge_scores(j["criteria"]),
                    "Distribution of the judge's 1-5 scores per criterion")]
    pw = j.get("pairwise")
    if not pw:
        return [*out, Para("No head-to-head comparison (judge.pairwise is off).")]
    out += [Heading("Head to head (blind, both orders)", 3),
            Table(["criterion", "compared", "wins", "ties", "losses", "inconsistent", "win rate",
                   "preference", "first-position rate"],
                  [[n, p.get("compared"), p.get("wins"), p.get("ties"), p.get("losses"),
                    p.get("inconsistent"), p.get("win_rate"), p.get("preference"),
                    p.get("first_position_rate")] for n, p in sorted(pw.items())]),
            _figure("judge_pairwise", plots.pairwise(pw),
                    "Candidate vs base: a win or loss must hold in both orders, else it is a tie")]
    return out


def judge_reliability(ev: dict) -> list:
    """The judge's measured reliability beside its scores: the figures per criterion, whether
    the gate counted its checks, the declared thresholds, and a length-bias warning."""
    j, verdict = ev["judge"], ev["verdict"]
    rel, lengths = j.get("reliability"), j.get("length_bias") or {}
    thresholds = verdict.get("judge_reliability") or {}
    out: list = [Heading("How far the judge can be trusted", 3)]
    if not rel:
        return [*out, Para("**Not measured** (judge.reliability.enabled is off): "
                           + ("the gate treats every judge-based check as inconclusive."
                              if thresholds else "nothing vouches for the scores above."))]
    counted = {c["metric"].partition(".")[2]: c for c in verdict.get("checks") or []
               if "judge_reliability" in c}
    rows = []
    for name, r in sorted(rel.items()):
        check = counted.get(name)
        rows.append([name, r.get("pairs"), r.get("accuracy"), r.get("pairwise_accuracy"),
                     r.get("position_consistency"), r.get("first_position_rate"),
                     r.get("self_tie_rate"), (lengths.get(name) or {}).get("spearman"),
                     "no check" if check is None else
                     "reliable" if check["judge_reliability"]["reliable"] else "unreliable"])
    out += [Para("Measured on this run's held-out items: the team's real change against spoiled "
                 "copies (lines shuffled, another request's change, truncated, the request "
                 "ignored) graded absolutely (accuracy) and compared in both orders (pairwise "
                 "accuracy, position consistency, first-position rate: 0.5 is unbiased); the "
                 "candidate's answer against itself should be a tie (rates from 0 to 1)."),
            Table(["criterion", "known-answer pairs", "accuracy", "pairwise accuracy",
                   "position consistency", "first-position rate", "self-tie rate",
                   "length rho", "gate"], rows)]
    if thresholds:
        out.append(Para("Declared (conf/gate `judge_reliability`, frozen before eval): " + ", ".join(
            f"{k} {v:g}" for k, v in thresholds.items() if v is not None) + ". Below any of "
            "them a judge-based check is inconclusive: judge unreliable."))
    most = thresholds.get("max_length_correlation")
    biased = [(n, b["spearman"]) for n, b in sorted(lengths.items())
              if b.get("spearman") is not None and most is not None and abs(b["spearman"]) > most]
    if biased:
        out.append(Para("**Warning: length bias.** The judge's scores follow response length ("
                        + ", ".join(f"{n}: Spearman rho {rho:.2f}" for n, rho in biased)
                        + f"; |rho| > {most:g}): longer answers may be scored up for length "
                          "alone."))
    return out


def training(ev: dict) -> list:
    t = ev.get("training") or {}
    out: list = [Heading("Training")]
    if not t:
        return [*out, Para("No training manifest.")]
    if t.get("sources"):  # a merged adapter (harness merge-adapters)
        merge = t.get("merge") or {}
        out += [Para(f"Merged adapter ({t.get('method')}, density {fmt(merge.get('density'))}) "
                     f"of:"),
                Table(["source", "weight", "adapter sha256"],
                      [[s["ref"], s["weight"], str(s["adapter_sha256"])[:16] + "…"]
                       for s in t["sources"]])]
    else:
        out.append(Table(["backend", "method", "device", "steps", "tokens seen", "train loss",
                          "first loss", "last loss", "held-out loss", "seconds"],
                         [[t.get("backend"), t.get("method"), t.get("device"), t.get("global_step"),
                           t.get("tokens_seen"), t.get("train_loss"), t.get("first_loss"),
                           t.get("last_loss"), t.get("eval_loss"), t.get("wall_seconds")]]))
    if ev.get("lora"):
        out.append(Table(["setting", "value"], [[k, str(v)] for k, v in ev["lora"].items()]))
    out.append(_figure("loss", plots.loss(ev.get("loss_curve") or [], ev.get("eval_loss_curve") or []),
                       "Training loss per logged step; held-out loss where evaluated"))
    return out


def data(ev: dict) -> list:
    out: list = [Heading("Data")]
    ms = ev.get("mine_stats")
    if ms:
        out.append(Para(f"Mined `{ms.get('repo')}` at `{str(ms.get('head'))[:12]}`: "
                        f"{ms.get('commits_seen')} commits seen, time split at {ms.get('cutoff')}."))
        sources = ms.get("sources") or {}
        if sources:
            out.append(Table(["source", "in", "kept", "dropped (by filter)"],
                             [[k, s.get("in"), s.get("out"), ", ".join(
                                 f"{r}: {n}" for r, n in sorted((s.get("dropped") or {}).items()))
                               or "none"] for k, s in sources.items()]))
        out.append(Table(["kept (kind/split)", "records"], [[k, n] for k, n in
                                                            (ms.get("kept") or {}).items()]))
        extras = [(label, ms.get(key)) for label, key in (
            ("source files dropped", "files_dropped"), ("secrets redacted", "secrets_redacted"),
            ("decontaminated (benchmark overlap)", "decontaminated"))]
        out.append(Bullets([f"{label}: " + (", ".join(f"{k}: {n}" for k, n in v.items()) or "none")
                            for label, v in extras if isinstance(v, dict)]
                           + [f"reverted commits kept as negatives: {ms.get('negatives', 'n/a')}"]))
        out.append(_figure("dropped", plots.dropped(ms), "What mining kept, and what each filter "
                                                         "dropped"))
    else:
        out.append(Para("No mining statistics."))
    card = ev.get("dataset_card")
    if card:
        out.append(Para(f"Formatted {card.get('tokens')} tokens ({card.get('supervised_tokens')} "
                        f"supervised), max length {card.get('max_length')}; dropped while "
                        f"formatting: " + (", ".join(f"{k}: {n}" for k, n in
                                                     (card.get("dropped") or {}).items()) or "none")
                        + "."))
        out.append(Table(["training examples (kind)", "examples"],
                         [[k, n] for k, n in (card.get("examples") or {}).items()]))
        out.append(_figure("lengths", plots.lengths(card), "Training examples by length in tokens"))
    return out


def provenance(ev: dict) -> list:
    t, s = ev.get("training") or {}, (ev.get("metrics") or {}).get("settings") or {}
    hashes = [[k, v if isinstance(v, str) or v is None else
               ", ".join(f"{n}: {h[:12]}…" for n, h in v.items())] for k, v in ev["hashes"].items()]
    sandbox = (ev.get("metrics") or {}).get("sandbox") or {}
    out = [Heading("Provenance"),
           Para(f"Base model `{t.get('base_model_id')}` (revision {fmt(t.get('base_model_revision'))}"
                f", commit {fmt(t.get('base_model_commit'))}), seed {fmt(t.get('seed'))}."),
           Table(["what", "hash"], hashes),
           Table(["input file", "sha256"], [[k, v] for k, v in ev["inputs"].items()])]
    if t.get("versions"):
        out.append(Para("Versions: " + ", ".join(f"{k} {v}" for k, v in t["versions"].items() if v)
                        + "."))
    if s:
        out.append(Para(f"Eval settings, identical for both models: engine {s.get('engine')}, "
                        f"runner {s.get('runner')}, scorer {s.get('scorer')}, decoding "
                        f"{s.get('decoding')}, batch size {s.get('batch_size')}, max new tokens "
                        f"{s.get('max_new_tokens')}; sandbox {sandbox.get('mode')}."))
    return out


def export(ev: dict) -> list:
    """`harness export`'s files, each checked against the merged model it came from."""
    ex = ev.get("export")
    if not ex:
        return []
    merged = (ex.get("merged_mini_eval") or {}).get("edit_similarity")
    rows = [[t, f["file"], f["bytes"], f["status"], "yes" if f["tokenization_identical"] else "no",
             f["top1_agreement"], f["max_abs_logit_error"], f["greedy_identical"],
             (f["mini_eval"] or {}).get("edit_similarity"),
             (f["mini_eval"] or {}).get("same_output_as_merged")]
            for t, f in ex["files"].items()]
    return [Heading("Export (GGUF, Ollama, vLLM)"),
            Para(f"Each file read back and compared with the merged model on fixed prompts, and "
                 f"on {ex.get('mini_eval_items') or 0} held-out completion items "
                 f"({ex.get('mini_eval_mode')}; merged model's edit similarity "
                 f"{'n/a' if merged is None else f'{merged:.3f}'}). vLLM: `{ex.get('vllm_command')}`."),
            Table(["type", "file", "bytes", "verdict", "same tokens", "top-1 agreement",
                   "max logit error", "greedy identical", "mini-eval edit sim.",
                   "same answer as merged"], rows)]


def build(ev: dict, max_flips: int = 20) -> Document:
    doc = Document(f"Run {ev['run']}: **{ev['verdict']['decision'].upper()}**")
    for part in (summary(ev), gate(ev), codegen(ev, max_flips), fim(ev), judge(ev),
                 training(ev), export(ev), data(ev), provenance(ev)):
        doc.add(*part)
    return doc
