"""OpenAI-compatible HTTP server (FastAPI + uvicorn) over a local causal LM and LoRA adapters.

The base model is loaded once; each adapter is attached to it with PEFT under its own name and
picked per request by the `model` field, so comparing base and candidates never reloads
weights. Every request shares that one model, so they take turns on it one decoding step at a
time, in arrival order (harness/serve/fair.py): a long request slows a short one down, it does not
hold it up until it finishes. What a request may ask for (body size, prompt tokens, new tokens)
is bounded by `Limits`, and harness/serve/guard.py checks the key and the body size before any
of it is read.

Only the subset of the API the harness uses is implemented, plus vLLM's `guided_choice`, which
forces the reply to be one of a few strings (how an LLM judge is made to answer "1".."5").
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Annotated, Any

import anyio.from_thread
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from omegaconf import OmegaConf
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from harness.errors import HarnessError
from harness.format.fim import is_left_to_right
from harness.models.load import load_model, load_tokenizer
from harness.serve.fair import FairLock
from harness.serve.guard import Guard, error_body
from harness.serve.postprocess import Cursor, clean

DEFAULT_FIM = {"prefix": "<|fim_prefix|>", "suffix": "<|fim_suffix|>",
               "middle": "<|fim_middle|>", "end": "<|endoftext|>"}
CHAT_MAX_TOKENS = 512  # OpenAI's chat default is "until the context is full"; we cap it
COMPLETION_MAX_TOKENS = 16  # OpenAI's documented default for /v1/completions
MAX_STOP = 64  # stop strings per request (each is searched for after every token)
MAX_CHOICES = 16  # guided_choice scores every choice in one batch over a copy of the prompt cache
ENCODE_PIECE_CHARS = 8192  # long prompts are counted in pieces this long; see _Engine.encode
DISCONNECT_CHECK_STEPS = 16  # how often a generation looks whether its client is still there


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server; `harness serve` reads them from conf/serve
    (the defaults here are the same, for the in-process servers of eval and the judge)."""

    max_body_bytes: int = 524_288  # larger bodies: 413, before they are read or parsed
    max_prompt_tokens: int | None = 8192  # longer prompts: 400 (None: the model's context only)
    max_tokens: int = 1024  # new tokens per request; a larger max_tokens is cut to this
    max_active: int = 16  # generations taking turns at once; later ones wait to start

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "max_prompt_tokens":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise HarnessError(f"serve.{f.name}={value!r} must be a positive integer. Fix: "
                                   f"set it to one, e.g. serve.{f.name}={f.default}.")


class APIError(Exception):
    """An error returned to the client in OpenAI's JSON shape."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _error(status: int, message: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code), status_code=status)


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown OpenAI fields are accepted and ignored

    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)  # what torch's generator takes
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP)] | None = None
    n: int = 1
    stream: bool = False


class ChatRequest(_Request):
    messages: list[dict[str, Any]]
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    guided_choice: Annotated[list[str], Field(min_length=1, max_length=MAX_CHOICES)] | None = None


class CompletionRequest(_Request):
    prompt: str | list[str]
    suffix: str | None = None
    echo: bool = False
    postprocess: bool | None = None  # code-completion clean-up (null: the server's default)


@dataclass
class Generation:
    text: str
    n_tokens: int
    finish_reason: str
    logprobs: list[dict] | None = None  # OpenAI chat shape: one entry per generated token


class _Engine:
    """The shared model, its tokenizer and adapters; every step on it goes through `turn(name)`."""

    def __init__(self, model_ref: str, adapters: dict[str, str], served_name: str,
                 limits: Limits):
        if served_name in adapters:
            raise HarnessError(f"adapter name {served_name!r} clashes with the base model's name")
        cuda = torch.cuda.is_available()
        self.tokenizer = load_tokenizer(model_ref)
        model = load_model(model_ref, OmegaConf.create({"dtype": "bfloat16" if cuda else "float32"}))
        self.device = torch.device("cuda" if cuda else "cpu")
        model.to(self.device)
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {i for i in [*eos, self.tokenizer.eos_token_id] if i is not None}
        self.context = getattr(model.config, "max_position_embeddings", None)
        if adapters:
            from peft import PeftModel

            first, *rest = adapters
            model = PeftModel.from_pretrained(model, adapters[first], adapter_name=first)
            for name in rest:
                model.load_adapter(adapters[name], adapter_name=name)
        self.model = model.eval()
        self.served_name, self.adapters, self.limits = served_name, dict(adapters), limits
        self.lock = FairLock()
        self.slots = threading.Semaphore(limits.max_active)  # wakes its waiters in order
        self._active: str | None = None  # whose weights are switched on (None: not yet set)

    @property
    def names(self) -> list[str]:
        return [self.served_name, *self.adapters]

    def check(self, name: str) -> None:
        if name not in self.names:
            raise APIError(404, f"The model `{name}` does not exist; served: {self.names}",
                           "model_not_found")

    @contextlib.contextmanager
    def turn(self, name: str) -> Iterator[None]:
        """Hold the model, in arrival order, with `name`'s weights switched on (for the base:
        every adapter off). Held for one step, so requests for different adapters interleave;
        the switch is a flag on each LoRA layer, made only when the name changes."""
        with self.lock:
            if self.adapters and name != self._active:
                if name == self.served_name:
                    self.model.base_model.disable_adapter_layers()
                else:
                    self.model.base_model.enable_adapter_layers()
                    self.model.set_adapter(name, inference_mode=True)
                self._active = name
            yield

    def encode(self, text: str, special: bool) -> list[int]:
        """`text`'s token ids; one over `limits.max_prompt_tokens` is refused after encoding
        little more than the limit's worth of it. Encoded whole, a 400 KB prompt took ~1 s and,
        16 at a time, left the process ~250 MB larger.

        Longer texts are counted piece by piece first, stopping once past the limit. A cut can
        split a token in two, so each piece may count one or two more than the whole text would:
        the text is refused only when the count is over the limit by more than that."""
        limit = self.limits.max_prompt_tokens
        if limit is not None and len(text) > ENCODE_PIECE_CHARS:
            n = 0
            for pieces, start in enumerate(range(0, len(text), ENCODE_PIECE_CHARS), 1):
                piece = text[start:start + ENCODE_PIECE_CHARS]
                n += len(self.tokenizer(piece, add_special_tokens=False).input_ids)
                if n - 2 * pieces > limit:
                    raise APIError(400, f"the prompt is more than {limit} tokens, the most this "
                                        f"server takes (serve.max_prompt_tokens)",
                                   "context_length_exceeded")
        return self.tokenizer(text, add_special_tokens=special).input_ids

    def budget(self, n_prompt: int, requested: int) -> int:
        """`requested` new tokens, cut to `limits.max_tokens` and so that prompt + completion
        fit the model's context; a prompt over `limits.max_prompt_tokens` is refused."""
        if n_prompt == 0:
            raise APIError(400, "the prompt is empty")
        if self.limits.max_prompt_tokens is not None and n_prompt > self.limits.max_prompt_tokens:
            raise APIError(400, f"the prompt is {n_prompt} tokens; this server takes at most "
                                f"{self.limits.max_prompt_tokens} (serve.max_prompt_tokens)",
                           "context_length_exceeded")
        requested = min(requested, self.limits.max_tokens)
        room = (self.context or n_prompt + requested) - n_prompt
        if room <= 0:
            raise APIError(400, f"the prompt is {n_prompt} tokens; the model's context is "
                                f"{self.context}", "context_length_exceeded")
        return min(requested, room)

    def token_entry(self, token_id: int, logprob: float) -> dict:
        text = self.tokenizer.decode([token_id])
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    @torch.inference_mode()
    def generate(self, name: str, ids: list[int], max_tokens: int, temperature: float,
                 top_p: float, seed: int | None, stop: list[str], stop_ids: set[int],
                 top_logprobs: int | None = None,
                 until: Callable[[str], bool] | None = None,
                 gone: Callable[[], bool] | None = None) -> Generation:
        """Decode token by token (KV-cached, one `turn` per step) until a stop token, a stop
        string, max_tokens or `until(text)` says the text is complete, or `gone()` says the
        client left (then the steps would only delay the others).

        Stop strings are checked on the decoded text, so they may span tokens; the returned
        text ends before the earliest one, as OpenAI's does.
        """
        with self.slots:  # a place among the generations in progress (each holds a KV cache)
            rng = torch.Generator().manual_seed(seed if seed is not None else random.getrandbits(63))
            inputs, past = torch.tensor([ids], device=self.device), None
            out: list[int] = []
            entries: list[dict] = []
            text, finish, token = "", "length", -1
            for n in range(1, max_tokens + 1):
                if gone is not None and n % DISCONNECT_CHECK_STEPS == 0 and gone():
                    break
                with self.turn(name):
                    step = self.model(input_ids=inputs, past_key_values=past, use_cache=True)
                past = step.past_key_values
                logprobs = torch.log_softmax(step.logits[0, -1].float(), dim=-1).cpu()
                token = _sample(logprobs, temperature, top_p, rng)
                if token in stop_ids:
                    finish = "stop"
                    break
                out.append(token)
                if top_logprobs is not None:
                    top = logprobs.topk(top_logprobs) if top_logprobs else None
                    entries.append({**self.token_entry(token, float(logprobs[token])),
                                    "top_logprobs": [] if top is None else [
                                        self.token_entry(int(i), float(v))
                                        for v, i in zip(top.values, top.indices, strict=True)]})
                text = self.tokenizer.decode(out, skip_special_tokens=True)
                cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=None)
                if cut is not None:
                    text, finish = text[:cut], "stop"
                    break
                if until is not None and until(text):
                    finish = "stop"
                    break
                inputs = torch.tensor([[token]], device=self.device)
            n_tokens = len(out) + (token in stop_ids)  # a stop token is generated, so it counts
            return Generation(text, n_tokens, finish, entries if top_logprobs is not None else None)

    @torch.inference_mode()
    def choose(self, name: str, ids: list[int], choices: list[str],
               top_logprobs: int | None) -> Generation:
        """vLLM's guided_choice: the choice with the highest total log-probability.

        The prompt runs once; its KV cache is then copied for each choice, and only the choice
        tokens run as a batch. Scoring each choice as prompt + choice runs the prompt once per
        choice: with ~1,500-token judge prompts that was 4.1x slower on the real offline model
        (`bench/bench_serve.py choice`).
        Only the logits over the choice positions are materialised (`logits_to_keep`), which
        matters with 150k-token vocabularies.
        """
        seqs = [self.tokenizer.encode(c, add_special_tokens=False) for c in choices]
        if not all(seqs):
            raise APIError(400, "guided_choice entries must be non-empty strings")
        width = max(map(len, seqs))
        if self.budget(len(ids), width) < width:  # a choice is what gets generated
            raise APIError(400, f"a guided_choice entry is {width} tokens; at most "
                                f"{self.budget(len(ids), width)} fit (serve.max_tokens, context)")
        with self.turn(name):
            out = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True,
                             logits_to_keep=1)
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1).cpu()
            totals = torch.tensor([float(first[s[0]]) for s in seqs])
            if width > 1:  # the choices' later tokens, each choice on its own copy of the cache
                cache = out.past_key_values
                cache.batch_repeat_interleave(len(seqs))
                pad = self.tokenizer.pad_token_id or 0
                batch = [s + [pad] * (width - len(s)) for s in seqs]
                mask = [[1] * (len(ids) + len(s)) + [0] * (width - len(s)) for s in seqs]
                logits = self.model(input_ids=torch.tensor(batch, device=self.device),
                                    attention_mask=torch.tensor(mask, device=self.device),
                                    past_key_values=cache, use_cache=True,
                                    logits_to_keep=width).logits[:, :-1]
                rest = torch.log_softmax(logits.float(), dim=-1).cpu()
                totals += torch.stack([rest[i, torch.arange(len(s) - 1), torch.tensor(s[1:], dtype=torch.long)].sum()
                                       for i, s in enumerate(seqs)])
        best = int(totals.argmax())
        entries = None
        if top_logprobs is not None:  # renormalised over the choices, reported at position 0
            norm = torch.log_softmax(totals, dim=0)
            order = norm.argsort(descending=True)[: top_logprobs or len(choices)]

            def entry(i: int) -> dict:
                return {"token": choices[i], "logprob": float(norm[i]),
                        "bytes": list(choices[i].encode())}

            entries = [{**entry(best), "top_logprobs": [entry(int(i)) for i in order]}]
        return Generation(choices[best], len(seqs[best]), "stop", entries)


def _sample(logprobs: torch.Tensor, temperature: float, top_p: float,
            rng: torch.Generator) -> int:
    """Greedy at temperature 0, else nucleus sampling from the tempered distribution."""
    if temperature == 0:
        return int(logprobs.argmax())
    probs = torch.softmax(logprobs / temperature, dim=-1)
    if top_p < 1:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < top_p  # smallest prefix whose mass reaches top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=rng))


def _check(req: _Request) -> dict[str, Any]:
    """Reject what is not implemented; return the sampling settings with OpenAI's defaults."""
    if req.n != 1:
        raise APIError(400, "only n=1 is supported")
    if req.stream:
        raise APIError(400, "streaming is not supported")
    temperature = 1.0 if req.temperature is None else req.temperature
    top_p = 1.0 if req.top_p is None else req.top_p
    if not 0 <= temperature <= 2 or not 0 < top_p <= 1:
        raise APIError(400, "temperature must be in [0, 2] and top_p in (0, 1]")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    return {"temperature": temperature, "top_p": top_p, "seed": req.seed, "stop": stop}


def _max_tokens(*values: int | None) -> int:
    requested = next(v for v in values if v is not None)
    if requested < 1:
        raise APIError(400, "max_tokens must be at least 1")
    return requested


def _text(content: Any) -> str:
    """Message content as text; the list-of-parts form keeps only its text parts."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def _reply(kind: str, prefix: str, model: str, choice: dict, n_prompt: int,
           gen: Generation) -> dict:
    usage = {"prompt_tokens": n_prompt, "completion_tokens": gen.n_tokens,
             "total_tokens": n_prompt + gen.n_tokens}
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()),
            "model": model, "choices": [choice], "usage": usage}


def _gone(request: Request) -> Callable[[], bool]:
    """Whether the client disconnected, asked from the worker thread a sync endpoint runs in."""
    return lambda: anyio.from_thread.run(request.is_disconnected)


def create_app(model_ref: str, adapters: dict[str, str] | None = None, served_name: str = "base",
               fim: dict | str | None = None, postprocess: bool = False, limits: Limits | None = None,
               api_key: str | None = None) -> FastAPI:
    """Load `model_ref` once (plus `adapters`: name -> adapter dir) and serve it over HTTP.

    `fim` overrides the fill-in-the-middle sentinels (prefix, suffix, middle, end) used when a
    completion request carries a `suffix`; the defaults are Qwen2.5-Coder's; `"left_to_right"`
    (`model.fim` of a model without sentinels) refuses a `suffix` with a 400. `postprocess`
    makes the code-completion clean-up (harness/serve/postprocess.py) the default for
    /v1/completions, as `harness serve` does for editors; a request's own `postprocess` field
    wins. Off by default: evaluation and the judge need the model's raw output.
    `limits` bound what one request may ask for; with `api_key`, every request must carry it
    as a bearer token.
    """
    adapters = dict(adapters or {})
    limits = limits or Limits()
    engine = _Engine(model_ref, adapters, served_name, limits)
    tok = engine.tokenizer
    fim = None if is_left_to_right(fim) else {**DEFAULT_FIM, **(fim or {})}
    fim_end = tok.get_vocab().get(fim["end"]) if fim else None
    app = FastAPI(title="harness model server")
    app.state.engine = engine
    app.add_middleware(Guard, max_body_bytes=limits.max_body_bytes, api_key=api_key)

    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                     for e in exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail),
                      "request_too_large" if exc.status_code == 413 else None)

    @app.get("/v1/models")
    def list_models() -> dict:
        created = int(time.time())
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "harness",
             "root": adapters.get(name, model_ref),
             "parent": served_name if name in adapters else None}
            for name in engine.names]}

    @app.post("/v1/chat/completions")
    def chat_completions(req: ChatRequest, request: Request) -> dict:
        engine.check(req.model)
        sampling = _check(req)
        try:
            messages = [{"role": m.get("role"), "content": _text(m.get("content"))}
                        for m in req.messages]
            prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as e:
            raise APIError(400, f"could not render the messages with the chat template: {e}") from e
        ids = engine.encode(prompt, special=False)
        top = (req.top_logprobs or 0) if req.logprobs else None
        if req.guided_choice is not None:
            gen = engine.choose(req.model, ids, req.guided_choice, top)
        else:
            wanted = _max_tokens(req.max_completion_tokens, req.max_tokens, CHAT_MAX_TOKENS)
            gen = engine.generate(req.model, ids, engine.budget(len(ids), wanted), **sampling,
                                  stop_ids=engine.eos_ids, top_logprobs=top, gone=_gone(request))
        choice = {"index": 0, "message": {"role": "assistant", "content": gen.text},
                  "logprobs": None if gen.logprobs is None else {"content": gen.logprobs},
                  "finish_reason": gen.finish_reason}
        return _reply("chat.completion", "chatcmpl", req.model, choice, len(ids), gen)

    @app.post("/v1/completions")
    def completions(req: CompletionRequest, request: Request) -> dict:
        engine.check(req.model)
        sampling = _check(req)
        if req.echo:
            raise APIError(400, "echo is not supported")
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if len(prompts) != 1:
            raise APIError(400, "exactly one prompt per request is supported")
        prompt = prompts[0]
        if req.suffix is not None:
            if fim is None:
                raise APIError(400, "this model has no fill-in-the-middle tokens "
                                    "(model.fim=left_to_right): send the prefix without a suffix")
            prompt = fim["prefix"] + prompt + fim["suffix"] + req.suffix + fim["middle"]
        ids = engine.encode(prompt, special=True)
        stop_ids = engine.eos_ids | ({fim_end} if fim_end is not None else set())
        cursor = (Cursor.of(prompts[0], req.suffix or "")
                  if (postprocess if req.postprocess is None else req.postprocess) else None)
        wanted = _max_tokens(req.max_tokens, COMPLETION_MAX_TOKENS)
        gen = engine.generate(
            req.model, ids, engine.budget(len(ids), wanted), **sampling, stop_ids=stop_ids,
            until=None if cursor is None else lambda t: clean(t, cursor, final=False).ended,
            gone=_gone(request))
        text, finish = gen.text, gen.finish_reason
        if cursor is not None:
            done = clean(text, cursor)
            text, finish = done.text, "stop" if done.ended else finish
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return _reply("text_completion", "cmpl", req.model, choice, len(ids), gen)

    return app


class ServerThread:
    """Run uvicorn for `app` in a daemon thread, so one process can serve a model and call it
    over real HTTP (tests, the local judge). The socket is bound before the thread starts, so
    port 0 (any free port) has no race."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0):
        self.app, self.host, self.port = app, host, port
        self.base_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def __enter__(self) -> ServerThread:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self.host, self.port))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name=f"uvicorn-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:  # set once the socket is listening
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise HarnessError(f"the model server on {self.host}:{self.port} did not start")
            time.sleep(0.01)
        self.base_url = f"http://{self.host}:{self.port}/v1"
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._socket is not None:
            self._socket.close()
