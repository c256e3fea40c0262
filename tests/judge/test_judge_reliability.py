"""The judge's reliability, measured on the run's own held-out items, and the gate's reaction:
scripted loopback judges (judge_fake_server) that are reliable, position-biased or random."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import make_cfg
from judge_fake_server import FakeJudge, position_biased_judge, random_judge, reliable_judge

from harness.eval.judging import run_judge
from harness.gate.thresholds import freeze_thresholds
from harness.io import atomic_write_json, read_json, read_jsonl
from harness.judge.reliability import corruptions
from harness.rundir import METRICS, VERDICT, write_stage
from harness.stages import run_stage

RUBRIC = Path(__file__).resolve().parents[2] / "judges" / "code_change.yaml"
# ten held-out change requests, each answered by the team with a three-line change
ITEMS = [{"id": f"c{i}", "instruction": f"Add the helper number {i}",
          "response": f"+def helper_{i}(x):\n+    y = x * {i}\n+    return y + {i}"}
         for i in range(10)]
ANSWERS = {"base": [{"output": f"def helper_{i}(x): pass"} for i in range(10)],
           "candidate": [{"output": f"def helper_{i}(x):  # GOOD\n    return x * {i} + {i}"}
                         for i in range(10)]}


def test_spoilings_differ_from_the_real_change_and_are_left_out_when_they_cannot():
    spoiled = corruptions(ITEMS[:2], seed=0)
    real = ITEMS[0]["response"]
    assert set(spoiled["c0"]) == {"shuffled", "other_change", "truncated", "ignored"}
    assert sorted(spoiled["c0"]["shuffled"].splitlines()) == sorted(real.splitlines())
    assert spoiled["c0"]["shuffled"] != real
    assert spoiled["c0"]["other_change"] == ITEMS[1]["response"]
    assert spoiled["c0"]["truncated"] == real.splitlines()[0]
    assert "Add the helper number 0" in spoiled["c0"]["ignored"] and "def" not in spoiled["c0"]["ignored"]
    assert corruptions(ITEMS[:2], seed=0) == spoiled  # seeded: the same known answers on a rerun
    # one line cannot be shuffled; one record has no other change to swap in
    lone = corruptions([{"id": "x", "instruction": "Fix it", "response": "+return 1"}], seed=0)
    assert set(lone["x"]) == {"truncated", "ignored"}


def one_criterion(tmp_path: Path) -> Path:
    """The project's rubric with convention_adherence (the gate's judge check) only."""
    rubric = yaml.safe_load(RUBRIC.read_text())
    rubric["criteria"] = [c for c in rubric["criteria"] if c["name"] == "convention_adherence"]
    (tmp_path / "rubric.yaml").write_text(yaml.safe_dump(rubric))
    return tmp_path / "rubric.yaml"


def judged_run(tmp_path: Path, script, pairwise: bool = True):
    """run_judge against a scripted judge on a one-criterion rubric, then the gate stage over
    its results, with the gate's judge check as its only check."""
    cfg = make_cfg(tmp_path / "run", cache_dir=tmp_path / "cache", overrides=[
        "judge.base_url=http://placeholder", "judge.model=fake", "judge.output=json",
        "judge.max_tokens=50", "judge.max_concurrency=8", f"judge.rubric={one_criterion(tmp_path)}",
        f"judge.pairwise={str(pairwise).lower()}",
        "~gate.checks.humaneval", "~gate.checks.mbpp", "~gate.checks.fim",
        "~gate.checks.forgetting", "~gate.checks.forgetting_relative"])
    freeze_thresholds(cfg)  # as eval does, before any judgement
    out = tmp_path / "run" / "eval"
    with FakeJudge(script) as server:
        cfg.judge.base_url = server.base_url
        summary = run_judge(cfg.judge, cfg.model, cfg.cache_dir, out, "unused", ITEMS, ANSWERS)
    atomic_write_json(out / METRICS, {"judge": summary})
    write_stage(out, "eval", "eval-fp", {})
    cfg.judge.base_url = "http://placeholder"  # as frozen: the gate must not see a change
    verdict = run_stage(cfg, "gate")
    check = read_json(tmp_path / "run" / "gate" / VERDICT)["checks"][0]
    return summary, verdict, check, server


def test_a_reliable_judge_is_measured_as_such_and_its_check_decides(tmp_path):
    summary, verdict, check, server = judged_run(tmp_path, reliable_judge)
    r = summary["reliability"]["criteria"]["convention_adherence"]
    assert r["pairs"] == 20  # ten items x (shuffled, ignored): the criterion's known_worse
    assert r["by_spoiling"].keys() == {"shuffled", "ignored"}
    assert (r["accuracy"], r["pairwise_accuracy"], r["position_consistency"]) == (1.0, 1.0, 1.0)
    assert r["first_position_rate"] == 0.5 and r["self_tie_rate"] == 1.0 and r["self_pairs"] == 10
    assert verdict == {"verdict": "deploy", "checks": {"convention_adherence": "pass"}}
    assert check["judge_reliability"]["reliable"]
    # the judgements behind the figures are kept, and a self pair (one prompt) was asked once
    rows = list(read_jsonl(tmp_path / "run" / "eval" / "samples" / "judge_reliability.jsonl"))
    assert {r["kind"] for r in rows} == {"known_answer", "known_pair", "self_pair"}
    self_prompts = [q for q in server.requests if _same_pair(q["body"])]
    assert len(self_prompts) == 10
    assert summary["settings"]["judge_is_model_under_test"] is False


def _same_pair(body: dict) -> bool:
    prompt = body["messages"][1]["content"]
    return ("<<<RESPONSE_A>>>" in prompt and prompt.split("<<<RESPONSE_A>>>")[1].split("<<<END")[0]
            == prompt.split("<<<RESPONSE_B>>>")[1].split("<<<END")[0])


def test_a_position_biased_judge_cannot_decide_the_gate(tmp_path):
    summary, verdict, check, _ = judged_run(tmp_path, position_biased_judge)
    r = summary["reliability"]["criteria"]["convention_adherence"]
    assert r["accuracy"] == 1.0  # its absolute grades are fine...
    assert r["first_position_rate"] == 1.0 and r["position_consistency"] == 0.0  # ...its choices not
    assert verdict == {"verdict": "inconclusive", "checks": {"convention_adherence": "inconclusive"}}
    assert check["status_if_reliable"] == "pass"
    assert check["reason"].startswith("judge unreliable: pairwise accuracy 0% < 50%; position "
                                      "consistency 0% < 75%")


def test_a_random_judge_cannot_decide_the_gate(tmp_path):
    summary, verdict, check, _ = judged_run(tmp_path, random_judge)
    r = summary["reliability"]["criteria"]["convention_adherence"]
    assert r["accuracy"] < 0.8 and r["pairwise_accuracy"] < 0.5
    assert verdict["checks"] == {"convention_adherence": "inconclusive"}
    assert verdict["verdict"] == "inconclusive"
    assert "judge unreliable" in check["reason"] and "accuracy" in check["reason"]


def test_with_pairwise_reliability_off_position_figures_are_missing_and_count_against(tmp_path):
    """Absolute-only measurement cannot show position bias; the declared thresholds still ask
    for it, so the check stays inconclusive rather than trusting an unmeasured judge."""
    cfg = make_cfg(tmp_path / "run", cache_dir=tmp_path / "cache", overrides=[
        "judge.model=fake", "judge.output=json", "judge.max_tokens=50", "judge.pairwise=false",
        "judge.reliability.pairwise=false", "judge.max_concurrency=8",
        "judge.base_url=http://placeholder"])
    with FakeJudge(reliable_judge) as server:
        cfg.judge.base_url = server.base_url
        summary = run_judge(cfg.judge, cfg.model, cfg.cache_dir, tmp_path / "out", "unused",
                            ITEMS[:4], {k: v[:4] for k, v in ANSWERS.items()})
    r = summary["reliability"]["criteria"]["correctness"]
    assert r["accuracy"] == 1.0 and r["pairwise_accuracy"] is None and r["self_tie_rate"] is None
    assert not any("<<<RESPONSE_A>>>" in q["body"]["messages"][1]["content"] for q in server.requests)


def report_of(run_dir: Path) -> str:
    from harness.report.collect import collect
    from harness.report.document import to_markdown
    from harness.report.sections import build

    return to_markdown(build(collect(run_dir, "test", {})))


def test_the_report_shows_reliability_beside_the_scores_and_warns_of_length_bias(tmp_path):
    judged_run(tmp_path, position_biased_judge)
    md = report_of(tmp_path / "run")
    section = md[md.index("## LLM judge"):]
    assert section.index("| criterion | answers |") < section.index("### How far the judge")
    row = next(line for line in section.splitlines() if line.startswith("| convention_adherence | 20 |"))
    assert row.startswith("| convention_adherence | 20 | 1.000 | 0.000 | 0.000 | 1.000 | 0.000 | 1.000 |")
    assert row.endswith("| unreliable |")
    assert "min_accuracy 0.8" in section and "inconclusive: judge unreliable" in section
    # the candidate's answers (GOOD, longer) score higher: a strong length correlation
    assert "**Warning: length bias.**" in section and "convention_adherence: Spearman rho 1.00" in section
    assert "model under test" not in md  # a separate judge: no such caveat
    summary = md[:md.index("## Gate")]
    assert ("**The judge was unreliable on this run's known answers**, so these judge-based "
            "checks could neither pass nor fail: convention_adherence (its scores alone: pass).") in summary


def test_the_offline_default_judge_says_in_the_first_lines_that_it_is_the_model_under_test(
        tmp_path, tiny_model):
    cfg = make_cfg(tmp_path / "run", cache_dir=tmp_path / "cache", overrides=[
        "judge.pairwise=false", "judge.reliability.pairwise=false",
        f"judge.rubric={one_criterion(tmp_path)}",
        "~gate.checks.humaneval", "~gate.checks.mbpp", "~gate.checks.fim",
        "~gate.checks.forgetting", "~gate.checks.forgetting_relative"])
    assert cfg.judge.base_url is None  # the offline default: a loopback serve over the base model
    freeze_thresholds(cfg)
    out = tmp_path / "run" / "eval"
    summary = run_judge(cfg.judge, cfg.model, cfg.cache_dir, out, tiny_model, ITEMS[:2],
                        {k: v[:2] for k, v in ANSWERS.items()})
    assert summary["settings"]["judge_is_model_under_test"] is True
    atomic_write_json(out / METRICS, {"judge": summary})
    write_stage(out, "eval", "eval-fp", {})
    run_stage(cfg, "gate")
    first = report_of(tmp_path / "run").split("\n\n")[1]  # the paragraph under the title
    assert first.startswith("**The LLM judge is the model under test**")
