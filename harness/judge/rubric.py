"""Judge rubrics: the YAML files in judges/ that say what a judge grades and how it is asked.

Every word the judge sends comes from the rubric (criteria with 1-5 anchors, system prompts,
templates, the reference block, answer instructions, the re-ask and the JSON schemas of a
judgement), so a rubric name + version identifies the prompts exactly. Untrusted text (task,
reference, responses) is fenced between markers and stripped of anything marker-like, so a
response cannot close its own block and smuggle instructions into the judge's prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.errors import HarnessError

OUTPUT_MODES = ("choice", "json")
SCORES = ("1", "2", "3", "4", "5")
LABELS = ("A", "B", "tie")
KINDS = {"absolute": ("score", SCORES), "pairwise": ("winner", LABELS)}  # kind -> (key, values)
# Ways to spoil a real change that the judge's reliability is measured with
# (harness/judge/reliability.py); a criterion's `known_worse` lists those it must rank lower.
CORRUPTIONS = ("shuffled", "other_change", "truncated", "ignored")
_MARKER = re.compile(r"<<<[^<>\n]{0,80}>>>")  # any <<<...>>>, whatever its case or spacing


@dataclass(frozen=True)
class Criterion:
    name: str
    description: str
    anchors: dict[int, str]
    known_worse: tuple[str, ...] = CORRUPTIONS  # corruptions of a real change that score lower


@dataclass(frozen=True)
class Prompt:
    """One way of asking (absolute or pairwise): system prompt, user template, the answer
    instruction per output mode and the JSON schema a reply must match."""

    system: str
    template: str
    answer: dict[str, str]
    schema: dict


@dataclass(frozen=True)
class Rubric:
    name: str
    version: str
    criteria: tuple[Criterion, ...]
    reference: str
    no_reference: str
    reask: str
    absolute: Prompt
    pairwise: Prompt

    def prompt(self, kind: str) -> Prompt:
        return self.absolute if kind == "absolute" else self.pairwise


def untrusted(text: str, limit: int) -> str:
    """Strip delimiter look-alikes (so the text cannot close its block) and cap its length."""
    text = _MARKER.sub("[marker removed]", text)
    if len(text) > limit:
        text = text[:limit] + f"\n[... {len(text) - limit} more characters truncated]"
    return text


def render(rubric: Rubric, kind: str, mode: str, criterion: Criterion, instruction: str,
           reference: str | None, responses: tuple[str, ...], limit: int) -> list[dict]:
    """Chat messages asking for one judgement: one response (absolute) or two (pairwise, A, B)."""
    prompt = rubric.prompt(kind)
    anchors = "\n".join(f"{k} = {v}" for k, v in sorted(criterion.anchors.items()))
    ref = (rubric.reference.format(reference=untrusted(reference, limit)) if reference
           else rubric.no_reference)
    fenced = [untrusted(r, limit) for r in responses]
    slots = {"response": fenced[0]} if kind == "absolute" else {"response_a": fenced[0],
                                                                 "response_b": fenced[1]}
    user = prompt.template.format(criterion=criterion.name, description=criterion.description,
                                  anchors=anchors, instruction=untrusted(instruction, limit),
                                  reference=ref, answer=prompt.answer[mode], **slots)
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": user}]


def load_rubric(path: str | Path) -> Rubric:
    """Read and validate a rubric YAML (see judges/code_change.yaml for the format)."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"judge rubric {path} not found. Fix: point judge.rubric at a rubric "
                           f"YAML such as judges/code_change.yaml.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise HarnessError(f"judge rubric {path} is not valid YAML: {e}") from e
    data = data if isinstance(data, dict) else {}

    def need(section: dict, keys: tuple[str, ...], where: str) -> None:
        missing = [k for k in keys if not (isinstance(section, dict) and section.get(k))]
        if missing:
            raise HarnessError(f"judge rubric {path}: {where} lacks {missing}. Fix: add them "
                               f"(see judges/code_change.yaml).")

    need(data, ("name", "version", "criteria", "reference", "no_reference", "reask",
                "absolute", "pairwise"), "the rubric")
    criteria = []
    for i, c in enumerate(data["criteria"]):
        need(c, ("name", "description", "anchors"), f"criterion #{i + 1}")
        anchors = {int(k): str(v).strip() for k, v in c["anchors"].items()}
        if sorted(anchors) != [1, 2, 3, 4, 5]:
            raise HarnessError(f"judge rubric {path}: criterion {c['name']!r} needs anchors 1..5")
        worse = tuple(c.get("known_worse", CORRUPTIONS) or ())
        if not worse or not set(worse) <= set(CORRUPTIONS):
            raise HarnessError(f"judge rubric {path}: criterion {c['name']!r} has known_worse "
                               f"{list(worse)}; expected a non-empty list drawn from "
                               f"{list(CORRUPTIONS)}.")
        criteria.append(Criterion(str(c["name"]), str(c["description"]).strip(), anchors, worse))
    prompts = {}
    for kind, (key, values) in KINDS.items():
        section = data[kind]
        need(section, ("system", "template", "answer", "output_schema"), kind)
        need(section["answer"], OUTPUT_MODES, f"{kind}.answer")
        prompts[kind] = Prompt(str(section["system"]), str(section["template"]),
                               {m: str(section["answer"][m]).strip() for m in OUTPUT_MODES},
                               _schema(path, kind, section["output_schema"], key, values))
    rubric = Rubric(str(data["name"]), str(data["version"]), tuple(criteria),
                    str(data["reference"]), str(data["no_reference"]), str(data["reask"]),
                    prompts["absolute"], prompts["pairwise"])
    try:  # fail on load, not after the first hundred calls
        for kind in KINDS:
            render(rubric, kind, "json", criteria[0], "", "ref", ("", ""), 1)
        rubric.reask.format(error="", answer="")
    except (KeyError, IndexError, ValueError) as e:
        raise HarnessError(f"judge rubric {path}: bad template placeholder {e}. Allowed: "
                           f"criterion, description, anchors, instruction, reference, answer, "
                           f"response (absolute), response_a and response_b (pairwise); "
                           f"reference: reference; reask: error, answer.") from e
    return rubric


def _schema(path: Path, kind: str, schema: dict, key: str, values: tuple[str, ...]) -> dict:
    """A valid JSON schema whose `key` property is restricted to exactly `values`."""
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        raise HarnessError(f"judge rubric {path}: {kind}.output_schema is not a valid JSON "
                           f"schema: {e.message}") from e
    allowed = (schema.get("properties") or {}).get(key, {}).get("enum")
    if sorted(map(str, allowed or [])) != sorted(values) or key not in schema.get("required", []):
        raise HarnessError(f"judge rubric {path}: {kind}.output_schema must require a {key!r} "
                           f"property with enum {list(values)}.")
    return schema
