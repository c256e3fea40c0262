"""Typed settings, checked before any work: one dataclass per config section.

A bad value (`train.max_steps=-5`, `train.lr=abc`, `eval.engine=vlm`) used to pass start-up and
fail minutes later inside torch, or silently mean something else. Here the train, eval, judge
and gate sections are merged into their dataclasses by OmegaConf (the typed structured-config
machinery Hydra uses, so types are converted and refused exactly as Hydra would); each field's
rule (its range or choices, declared beside its type) and each section's `cross` checks then
run, and `check_config` adds the ties between sections. A key no dataclass declares is refused
too: every key conf/ ships is declared, so an unknown one is a typo or an undeclared feature.

Why not Hydra's ConfigStore schemas (tried: every experiment composes with them): a schema
fills each declared-but-absent key into the composed config (`eval.device`, a gate check's
`warn: null`), so the stage fingerprints and the frozen gate thresholds change, and the gate
rule, for which a present `warn` means a warn band, refuses the shipped min_gain checks; a bad
type then fails inside Hydra's compose with exit 1, before the CLI can exit 2; and every
compose (the CLI, the tests) must register the schemas first. Merging here gives the same
types and refusals and leaves the composed config as it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from harness.errors import HarnessError

T = TypeVar("T")
# A rule returns None for a good value, else what was expected ("a number > 0").
Rule = Callable[[Any], "str | None"]


class SettingError(ValueError):
    """A value outside its range or choices, naming its full key."""

    def __init__(self, key: str, value: object, expected: str, fix: str = "") -> None:
        self.key, self.value, self.expected, self.fix = key, value, expected, fix
        super().__init__(f"{key}={value!r}: expected {expected}")


# ---- rules ----------------------------------------------------------------------------------

def at_least(low: int) -> Rule:
    return lambda v: None if v >= low else f"a whole number >= {low}"


def above(low: float) -> Rule:
    return lambda v: None if math.isfinite(v) and v > low else f"a number > {low:g}"


def between(low: float, high: float, *, open_low: bool = False, open_high: bool = False,
            what: str = "a number") -> Rule:
    def rule(v: float) -> str | None:
        ok = math.isfinite(v) and (v > low if open_low else v >= low) and \
            (v < high if open_high else v <= high)
        return None if ok else f"{what} in {'(' if open_low else '['}{low:g}, {high:g}" \
                               f"{')' if open_high else ']'}"
    return rule


def one_of(*choices: str) -> Rule:
    return lambda v: None if v in choices else f"one of {', '.join(choices)}"


def each_of(*choices: str) -> Rule:
    return lambda v: None if all(x in choices for x in v) else f"a list of {', '.join(choices)}"


def nullable(rule: Rule, meaning: str) -> Rule:
    def check(v: Any) -> str | None:
        bad = None if v is None else rule(v)
        return bad and f"null ({meaning}) or {bad}"
    return check


def valid(check: Rule, fix: str = "") -> dict:
    """A field's metadata: its rule (and the fix to print), declared beside its type."""
    return {"rule": check, "fix": fix}


def SEED(v: int) -> str | None:
    return None if 0 <= v < 2**32 else "a seed in [0, 2**32)"


def NON_NEGATIVE(v: float) -> str | None:
    return None if math.isfinite(v) and v >= 0 else "a number >= 0"


COUNT = at_least(1)
PROBABILITY = between(0, 1, what="a probability")
LIMIT = nullable(COUNT, "no limit")


# ---- train --------------------------------------------------------------------------------

BACKENDS = ("auto", "hf", "unsloth")
METHODS = ("lora", "qlora")
QUANT_TYPES = ("nf4", "fp4")
LORA_BIASES = ("none", "all", "lora_only")

# transformers' own enums are the truth for these three, but importing them pulls in torch (9 s
# of CPU here), too slow for `harness mine`: the common values are accepted without the import.
COMMON_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
COMMON_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "sgd")
COMMON_INTEGRATIONS = ("tensorboard", "wandb", "mlflow")


def _scheduler(value: str) -> str | None:
    if value in COMMON_SCHEDULERS:
        return None
    from transformers.trainer_utils import SchedulerType

    return one_of(*(s.value for s in SchedulerType))(value)


def _optimizer(value: str) -> str | None:
    if value in COMMON_OPTIMIZERS:
        return None
    from transformers.training_args import OptimizerNames

    return one_of(*(o.value for o in OptimizerNames))(value)


def _names(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _module_names(value: Any) -> str | None:
    names = _names(value)
    ok = bool(names) and all(isinstance(n, str) and n for n in names)
    return None if ok else "all-linear, or a non-empty list of module names"


def _steps(value: int) -> str | None:
    return None if value == -1 or value >= 1 else "-1 (train for train.epochs) or a step count >= 1"


def _integrations(value: Any) -> str | None:
    names = [n for n in _names(value) if n not in (None, "none")]
    if all(n in COMMON_INTEGRATIONS for n in names):
        return None
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    known = sorted(INTEGRATION_TO_CALLBACK)
    ok = all(isinstance(n, str) and n in known for n in names)
    return None if ok else f"none, or one or a list of {', '.join(known)}"


@dataclass
class LoraSettings:
    r: int = field(default=16, metadata=valid(COUNT))
    alpha: float = field(default=32, metadata=valid(above(0)))
    dropout: float = field(default=0.05, metadata=valid(between(0, 1, open_high=True,
                                                               what="a probability")))
    target_modules: Any = field(default="all-linear", metadata=valid(_module_names))
    bias: str = field(default="none", metadata=valid(one_of(*LORA_BIASES)))  # train=unsloth sets it


@dataclass
class QLoraSettings:
    quant_type: str = field(default="nf4", metadata=valid(one_of(*QUANT_TYPES)))
    double_quant: bool = True


@dataclass
class MemorySettings:
    check: bool = True
    device_gb: float | None = field(default=None, metadata=valid(nullable(
        above(0), "the detected device's memory")))
    headroom: float = field(default=0.9, metadata=valid(between(0, 1, open_low=True,
                                                               what="a share")))


@dataclass
class TrainSettings:
    """conf/train/: what `harness train` reads, typed."""

    backend: str = field(default="auto", metadata=valid(one_of(*BACKENDS)))
    method: str = field(default="lora", metadata=valid(one_of(*METHODS)))
    lora: LoraSettings = field(default_factory=LoraSettings)
    qlora: QLoraSettings = field(default_factory=QLoraSettings)
    lr: float = field(default=2e-4, metadata=valid(above(0)))
    epochs: float = field(default=1, metadata=valid(above(0)))
    max_steps: int = field(default=-1, metadata=valid(_steps))
    batch_size: int = field(default=4, metadata=valid(COUNT))
    eval_batch_size: int | None = field(default=None, metadata=valid(nullable(
        COUNT, "the training batch size")))
    grad_accum: int = field(default=1, metadata=valid(COUNT))
    max_length: int = field(default=1024, metadata=valid(COUNT))
    packing: bool = False
    warmup: float = field(default=0.03, metadata=valid(NON_NEGATIVE))
    weight_decay: float = field(default=0.0, metadata=valid(NON_NEGATIVE))
    max_grad_norm: float = field(default=1.0, metadata=valid(NON_NEGATIVE))
    optim: str = field(default="adamw_torch", metadata=valid(_optimizer))
    lr_scheduler: str = field(default="cosine", metadata=valid(_scheduler))
    gradient_checkpointing: bool | None = None
    memory: MemorySettings = field(default_factory=MemorySettings)
    logging_steps: int = field(default=5, metadata=valid(COUNT))
    save_steps: int = field(default=50, metadata=valid(COUNT))
    save_total_limit: int | None = field(default=2, metadata=valid(nullable(
        COUNT, "keep every checkpoint")))
    report_to: Any = field(default="tensorboard", metadata=valid(_integrations))
    seed: int = field(default=0, metadata=valid(SEED))


# ---- eval -----------------------------------------------------------------------------------

ENGINES = ("hf", "vllm", "openai")
RUNNERS = ("harness", "lm_eval")
SCORERS = ("sandbox", "bigcode")
INFILL_SPANS = ("single", "multi")
BIGCODE_TASKS = ("humaneval", "mbpp")
SANDBOX_MODES = ("bwrap", "unshare", "rlimits")
SANDBOX_GUARANTEES = ("network_isolated", "unprivileged_user", "process_limit", "pid_namespace",
                      "read_only_root", "host_files_hidden")


@dataclass
class BenchmarkSettings:
    enabled: bool = True
    limit: int | None = field(default=None, metadata=valid(LIMIT))
    chat: bool = False


@dataclass
class NoiseFloorSettings:
    enabled: bool = True
    batch_size: int | None = field(default=None, metadata=valid(nullable(
        COUNT, "half of eval.batch_size")))


@dataclass
class InfillSettings:
    enabled: bool = True
    spans: list[str] = field(default_factory=lambda: ["single", "multi"],
                             metadata=valid(each_of(*INFILL_SPANS)))
    limit: int | None = field(default=None, metadata=valid(LIMIT))
    max_lines: int = field(default=5, metadata=valid(at_least(2),
                                                    "Multi-line holes need 2 lines or more."))
    max_new_tokens: int = field(default=128, metadata=valid(COUNT))
    seed: int = field(default=1234, metadata=valid(SEED))


@dataclass
class FimEvalSettings:
    enabled: bool = True
    holes: int = field(default=100, metadata=valid(COUNT))
    max_middle_lines: int = field(default=3, metadata=valid(COUNT))
    context_lines: int = field(default=40, metadata=valid(at_least(0)))
    max_new_tokens: int = field(default=64, metadata=valid(COUNT))
    batch_size: int | None = field(default=None, metadata=valid(nullable(COUNT, "eval.batch_size")))
    seed: int = field(default=1234, metadata=valid(SEED))


@dataclass
class JudgeEvalSettings:
    enabled: bool = True
    samples: int = field(default=16, metadata=valid(COUNT))
    max_new_tokens: int = field(default=256, metadata=valid(COUNT))


@dataclass
class ServedModels:
    base: str = "base"
    candidate: str = "candidate"


@dataclass
class OpenAISettings:
    base_url: str | None = None
    models: ServedModels = field(default_factory=ServedModels)
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = field(default=120, metadata=valid(above(0)))
    max_retries: int = field(default=3, metadata=valid(at_least(0)))
    max_stop: int | None = field(default=None, metadata=valid(nullable(
        COUNT, "send every stop string")))


@dataclass
class VllmSettings:
    max_lora_rank: int = field(default=64, metadata=valid(COUNT))
    llm_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class BigcodeSettings:
    main: str | None = None
    python: str | None = None
    extra_args: list[str] = field(default_factory=list)
    generations: str | None = None
    task: str = field(default="humaneval", metadata=valid(one_of(*BIGCODE_TASKS)))


@dataclass
class SandboxSettings:
    mode: str | None = field(default=None, metadata=valid(nullable(
        one_of(*SANDBOX_MODES), "the strongest that works")))
    require: list[str] = field(default_factory=list, metadata=valid(each_of(*SANDBOX_GUARANTEES)))
    timeout_s: float = field(default=10, metadata=valid(above(0)))
    memory_mb: int = field(default=1024, metadata=valid(COUNT))
    workers: int = field(default=2, metadata=valid(COUNT))
    self_check: bool = True


@dataclass
class EvalSettings:
    """conf/eval/: what `harness eval` reads, typed."""

    engine: str = field(default="hf", metadata=valid(one_of(*ENGINES)))
    runner: str = field(default="harness", metadata=valid(one_of(*RUNNERS)))
    scorer: str = field(default="sandbox", metadata=valid(one_of(*SCORERS)))
    device: str | None = None  # not in conf/: `+eval.device=cpu` (null: cuda when visible)
    batch_size: int = field(default=8, metadata=valid(COUNT))
    max_new_tokens: int = field(default=256, metadata=valid(COUNT))
    n_samples: int = field(default=1, metadata=valid(COUNT))
    temperature: float = field(default=0.0, metadata=valid(NON_NEGATIVE))
    top_p: float = field(default=0.95, metadata=valid(between(0, 1, open_low=True,
                                                             what="a probability")))
    seed: int = field(default=1234, metadata=valid(SEED))
    pass_at_k: list[int] = field(default_factory=lambda: [1])
    humaneval: BenchmarkSettings = field(default_factory=BenchmarkSettings)
    mbpp: BenchmarkSettings = field(default_factory=BenchmarkSettings)
    chat_max_new_tokens: int | None = field(default=None, metadata=valid(nullable(
        COUNT, "eval.max_new_tokens")))
    noise_floor: NoiseFloorSettings = field(default_factory=NoiseFloorSettings)
    humaneval_infill: InfillSettings = field(default_factory=InfillSettings)
    fim: FimEvalSettings = field(default_factory=FimEvalSettings)
    judge: JudgeEvalSettings = field(default_factory=JudgeEvalSettings)
    openai: OpenAISettings = field(default_factory=OpenAISettings)
    vllm: VllmSettings = field(default_factory=VllmSettings)
    bigcode: BigcodeSettings = field(default_factory=BigcodeSettings)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)

    def cross(self) -> None:
        if self.temperature == 0 and self.n_samples > 1:
            raise SettingError("n_samples", self.n_samples, "1 with eval.temperature=0 (greedy "
                               "decoding gives identical samples)", "Or sample: set eval.temperature "
                               "(bigcode: 0.2 for pass@1, 0.8 for pass@10/100).")
        for k in self.pass_at_k:
            if not 1 <= k <= self.n_samples:
                raise SettingError("pass_at_k", self.pass_at_k, f"each k in [1, eval.n_samples="
                                   f"{self.n_samples}] (pass@k needs k samples per item)")


# ---- judge ----------------------------------------------------------------------------------

OUTPUT_MODES = ("choice", "json")


@dataclass
class ReliabilitySettings:
    enabled: bool = True
    items: int | None = field(default=None, metadata=valid(nullable(
        at_least(2), "every judged item"), "Spoilings need another item."))
    pairwise: bool = True
    seed: int = field(default=0, metadata=valid(SEED))


@dataclass
class JudgeSettings:
    """conf/judge/: the judge endpoint and how it is asked, typed."""

    rubric: str = "judges/code_change.yaml"
    base_url: str | None = None
    model: str = "base"
    api_key_env: str = "OPENAI_API_KEY"
    output: str = field(default="choice", metadata=valid(one_of(*OUTPUT_MODES)))
    guided_choice: bool = True
    response_format: bool = True
    logprobs: bool = True
    top_logprobs: int = field(default=5, metadata=valid(at_least(0)))
    max_tokens: int = field(default=8, metadata=valid(COUNT))
    max_reasks: int = field(default=2, metadata=valid(at_least(0)))
    max_response_chars: int = field(default=4000, metadata=valid(COUNT))
    pairwise: bool = True
    reliability: ReliabilitySettings = field(default_factory=ReliabilitySettings)
    max_concurrency: int = field(default=4, metadata=valid(COUNT))
    timeout_s: float = field(default=120, metadata=valid(above(0)))
    max_retries: int = field(default=3, metadata=valid(at_least(0)))
    price_per_1k_prompt_tokens: float = field(default=0.0, metadata=valid(NON_NEGATIVE))
    price_per_1k_completion_tokens: float = field(default=0.0, metadata=valid(NON_NEGATIVE))
    budget_usd: float | None = field(default=None, metadata=valid(nullable(above(0), "no cap")))


# ---- gate -----------------------------------------------------------------------------------

GATE_RULES = ("max_drop", "min_gain", "min_rel_gain", "max_rel_drop")
ON_INCONCLUSIVE = ("hold", "deploy", "no-deploy")


def _metric(value: str) -> str | None:
    ok = all("." in part for part in value.split("+"))
    return None if ok else ("<task>.<field>, e.g. humaneval.pass@1 or judge.convention_adherence, "
                            "or metrics pooled with +, e.g. humaneval.pass@1 + mbpp.pass@1")


@dataclass
class GateCheck:
    metric: str = field(default=MISSING, metadata=valid(_metric))
    rule: str = field(default=MISSING, metadata=valid(one_of(*GATE_RULES)))
    fail: float = field(default=MISSING, metadata=valid(NON_NEGATIVE))
    warn: float | None = None
    hold_on_inconclusive: bool = True

    def cross(self) -> None:
        if self.warn is not None and self.rule != "max_drop":
            raise SettingError("warn", self.warn, "no warn band (only max_drop has one)")
        if self.warn is not None and not 0 <= self.warn <= self.fail:
            raise SettingError("warn", self.warn, f"a number in [0, fail={self.fail:g}]")
        if self.rule == "max_rel_drop" and self.fail > 1:
            raise SettingError("fail", self.fail, "a share of the base's rate in [0, 1]")


@dataclass
class PowerSettings:
    flip_rate: float | None = field(default=0.12, metadata=valid(nullable(
        between(0.0001, 1), "no power statement")))


@dataclass
class BootstrapSettings:
    samples: int = field(default=2000, metadata=valid(at_least(100)))
    confidence: float = field(default=0.95, metadata=valid(between(0.5, 0.999)))
    seed: int = field(default=0, metadata=valid(SEED))


FLOOR = nullable(PROBABILITY, "not required")


@dataclass
class JudgeReliabilityThresholds:
    min_pairs: int | None = field(default=8, metadata=valid(nullable(COUNT, "not required")))
    min_accuracy: float | None = field(default=0.8, metadata=valid(FLOOR))
    min_pairwise_accuracy: float | None = field(default=0.5, metadata=valid(FLOOR))
    min_position_consistency: float | None = field(default=0.75, metadata=valid(FLOOR))
    max_first_position_bias: float | None = field(default=0.2, metadata=valid(nullable(
        between(0, 0.5), "not required")))
    min_self_tie_rate: float | None = field(default=0.5, metadata=valid(FLOOR))
    max_length_correlation: float | None = field(default=0.5, metadata=valid(FLOOR))


@dataclass
class DecisionSettings:
    min_items: int = field(default=10, metadata=valid(COUNT))
    on_inconclusive: str = field(default="hold", metadata=valid(one_of(*ON_INCONCLUSIVE)))


@dataclass
class GateSettings:
    """conf/gate/: the declared decision rule, typed (harness/gate/rules.py applies it)."""

    checks: dict[str, GateCheck | None] = field(default_factory=dict, metadata=valid(
        lambda v: None if v else "a mapping of named checks"))
    power: PowerSettings | None = field(default_factory=PowerSettings)
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)
    judge_reliability: JudgeReliabilityThresholds | None = field(
        default_factory=JudgeReliabilityThresholds)
    decision: DecisionSettings = field(default_factory=DecisionSettings)


SECTIONS: dict[str, type] = {"train": TrainSettings, "eval": EvalSettings, "judge": JudgeSettings,
                             "gate": GateSettings}


# ---- checking -------------------------------------------------------------------------------

def _validate(obj: Any, prefix: str) -> None:
    """Every field's rule, then the object's own `cross` checks, nested objects first."""
    for f in fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}.{f.name}"
        rule = f.metadata.get("rule")
        if rule is not None and (expected := rule(value)):
            raise SettingError(key, value, expected, f.metadata.get("fix", ""))
        items = value.items() if isinstance(value, dict) else [("", value)]
        for name, item in items:
            if is_dataclass(item):
                _validate(item, f"{key}.{name}" if name else key)
    if hasattr(obj, "cross"):
        try:
            obj.cross()
        except SettingError as e:
            raise SettingError(f"{prefix}.{e.key}", e.value, e.expected, e.fix) from None


def check_section(name: str, values: dict | None, schema: type[T] | None = None) -> T:
    """`values` (a plain mapping, e.g. a frozen copy) as a checked `schema` instance, or a
    HarnessError naming the key and the fix."""
    schema = schema or SECTIONS[name]
    try:
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values or {}))
        _validate(obj, name)
        return obj  # type: ignore[return-value]
    except SettingError as e:
        raise HarnessError(f"{e}. Fix: set {e.key}=<valid value> on the command line or in "
                           f"conf/{name}/.{' ' + e.fix if e.fix else ''}") from None
    except ConfigKeyError as e:
        key = f"{name}.{e.full_key}"
        raise HarnessError(f"{key}: not a setting of {name} ({str(e).splitlines()[0]}). Fix: "
                           f"correct its spelling (conf/{name}/ lists the settings), or declare "
                           f"it in {schema.__name__} (harness/config_check.py) if code reads "
                           f"it.") from None
    except OmegaConfBaseException as e:
        key = f"{name}.{e.full_key}" if getattr(e, "full_key", None) else name
        value = OmegaConf.select(OmegaConf.create({name: values or {}}), key, default=None)
        raise HarnessError(f"{key}={value!r}: {str(e).splitlines()[0]}. Fix: give {key} a value "
                           f"of the declared type (conf/{name}/ shows the default).") from None


def typed(cfg: DictConfig, section: str, schema: type[T] | None = None) -> T:
    """`cfg.<section>` as a checked `schema` instance, or a HarnessError naming the key."""
    node = OmegaConf.select(cfg, section)
    values = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    return check_section(section, values, schema)


def check_ties(typed_sections: dict[str, Any]) -> None:
    """Settings of two sections that must agree."""
    t, e = typed_sections.get("train"), typed_sections.get("eval")
    if t is not None and e is not None and e.engine == "vllm" and e.vllm.max_lora_rank < t.lora.r:
        raise HarnessError(
            f"eval.vllm.max_lora_rank={e.vllm.max_lora_rank} is below train.lora.r={t.lora.r}: "
            f"vLLM cannot load the candidate adapter. Fix: set eval.vllm.max_lora_rank to a "
            f"rank vLLM supports (8, 16, 32, 64, 128, 256, ...) of at least {t.lora.r}.")


def check_config(cfg: DictConfig) -> dict[str, Any]:
    """Every known section (train, eval, judge, gate) typed and checked, then the ties between
    them; returns the typed sections. Called by every stage command before it does any work."""
    out = {name: typed(cfg, name, schema) for name, schema in SECTIONS.items()
           if OmegaConf.select(cfg, name) is not None}
    check_ties(out)
    return out
