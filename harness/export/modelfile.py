"""An Ollama Modelfile for the exported GGUF: the chat template in Ollama's Go template
language, the stop tokens, the default system prompt, and a FIM branch for `suffix` requests.

Jinja cannot be translated to Go templates in general, so we do not parse it: we render the
model's own Jinja template on marker messages (through the tokenizer, as at training time),
read off each role's text before and after the content and the generation prompt, and emit a
Go template built from those pieces. The pieces are then checked: rebuilding several
conversations from them must give exactly what the Jinja template renders, or the export
stops (set `export.ollama.template` to a hand-written one instead).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError

MARK = {"system": "\ue000S\ue000", "user": "\ue000U\ue000", "user2": "\ue000V\ue000",
        "assistant": "\ue000A\ue000"}
CHECK_CONVERSATIONS = (
    [("user", "Write a function that adds two numbers.")],
    [("system", "You are terse."), ("user", "def add(a, b):")],
    [("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "Sort a list {in place}.")],
    [("system", "Be precise."), ("user", "a"), ("assistant", "b\n\nc"), ("user", "  d  ")],
)


@dataclass(frozen=True)
class ChatPieces:
    """What the template puts around each message, and what it adds on its own."""

    head: str                       # before the first message (e.g. a BOS the template writes)
    prefix: dict[str, str]          # role -> text before the content
    suffix: dict[str, str]          # role -> text after the content
    generation: str                 # the generation prompt after the last user turn
    default_system: str | None      # the system prompt the template adds when none is given

    def render(self, messages: list[tuple[str, str]]) -> str:
        """The prompt Ollama builds from these pieces (last message a user turn)."""
        out = [self.head]
        if messages[0][0] != "system" and self.default_system is not None:
            messages = [("system", self.default_system), *messages]
        out += [self.prefix[r] + c + self.suffix[r] for r, c in messages]
        return "".join(out) + self.generation


def _cut(text: str, start: str, end: str | None = None) -> str:
    i = text.index(start) + len(start)
    return text[i:text.index(end, i)] if end else text[i:]


def _strip_prefix(text: str, prefix: str, what: str) -> str:
    if not text.startswith(prefix):
        raise HarnessError(f"the chat template does not render {what} consistently, so it cannot "
                           f"be translated to Ollama's template language. Fix: set "
                           f"export.ollama.template to a hand-written Go template.")
    return text[len(prefix):]


def _strip_suffix(text: str, suffix: str, what: str) -> str:
    return _strip_prefix(text[::-1], suffix[::-1], what)[::-1]


def chat_pieces(tokenizer) -> ChatPieces:
    """Read the pieces off the tokenizer's Jinja chat template (see the module docstring)."""
    if not tokenizer.chat_template:
        raise HarnessError("the model has no chat template, so Ollama's chat endpoint would send "
                           "raw text. Fix: set model.chat_template, or export.ollama.template.")

    def render(msgs: list[tuple[str, str]], gen: bool) -> str:
        return tokenizer.apply_chat_template([{"role": r, "content": c} for r, c in msgs],
                                             tokenize=False, add_generation_prompt=gen)

    u, v, s, a = MARK["user"], MARK["user2"], MARK["system"], MARK["assistant"]
    one = render([("user", u)], False)
    two = render([("user", u), ("user", v)], False)
    user_suffix = _cut(one, u)
    user_prefix = _strip_prefix(_cut(two, u, v), user_suffix, "two user turns")
    head0 = _strip_suffix(one[:one.index(u)], user_prefix, "a user turn")
    generation = _strip_prefix(render([("user", u)], True), one, "the generation prompt")
    with_system = render([("system", s), ("user", u)], False)
    system_suffix = _strip_suffix(_cut(with_system, s, u), user_prefix, "a system turn")
    bos = tokenizer.bos_token or ""
    # a BOS the template writes once, before the turns; not when every turn starts with that
    # token (SmolLM2 names <|im_start|> its bos)
    head = bos if bos and with_system.startswith(bos) and not user_prefix.startswith(bos) else ""
    system_prefix = _strip_prefix(with_system[:with_system.index(s)], head, "a system turn")
    default_system = None
    if head0 != head:  # the template adds a system turn of its own when none is given
        default_system = _strip_suffix(_strip_prefix(head0, head + system_prefix, "its default "
                                                     "system prompt"), system_suffix,
                                       "its default system prompt")
    chat = render([("user", u), ("assistant", a), ("user", v)], False)
    between = _strip_prefix(_cut(chat, u, a), user_suffix, "an assistant turn")
    assistant_suffix = _strip_suffix(_cut(chat, a, v), user_prefix, "an assistant turn")
    pieces = ChatPieces(head, {"system": system_prefix, "user": user_prefix, "assistant": between},
                        {"system": system_suffix, "user": user_suffix, "assistant": assistant_suffix},
                        generation, default_system)
    for conversation in CHECK_CONVERSATIONS:
        if pieces.render(list(conversation)) != render(list(conversation), True):
            raise HarnessError(f"the chat template renders {conversation} differently from the "
                               f"pieces read off it, so the Ollama template would be wrong. Fix: "
                               f"set export.ollama.template to a hand-written Go template.")
    return pieces


def _literal(text: str) -> str:
    """Text placed verbatim in a Go template (only `{{` would start an action)."""
    return text.replace("{{", '{{ "{{" }}')


def go_template(pieces: ChatPieces | None, fim: dict[str, str] | None) -> str:
    """Ollama's TEMPLATE: a FIM prompt when the request has a suffix (and the model has
    sentinels), else the chat turns (`pieces` None: a model without a chat template gets the
    raw prompt). Written on one line: `{{-` would trim the newlines that are part of turns."""
    chat = "{{ .Prompt }}" if pieces is None else _chat(pieces)
    if not fim:
        return chat
    infill = (f"{_literal(fim['prefix'])}{{{{ .Prompt }}}}{_literal(fim['suffix'])}"
              f"{{{{ .Suffix }}}}{_literal(fim['middle'])}")
    return f"{{{{ if .Suffix }}}}{infill}{{{{ else }}}}{chat}{{{{ end }}}}"


def _chat(pieces: ChatPieces) -> str:
    turns = "".join(
        f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}{_literal(pieces.prefix[role])}'
        f"{{{{ .Content }}}}"
        + (f"{{{{ if not $last }}}}{_literal(pieces.suffix[role])}{{{{ end }}}}" if role == "assistant"
           else _literal(pieces.suffix[role]))
        for i, role in enumerate(("system", "user", "assistant"))) + "{{ end }}"
    return (f"{_literal(pieces.head)}{{{{ range $i, $_ := .Messages }}}}"
            f"{{{{ $last := eq (len (slice $.Messages $i)) 1 }}}}{turns}"
            f'{{{{ if and $last (ne .Role "assistant") }}}}{_literal(pieces.generation)}{{{{ end }}}}'
            f"{{{{ end }}}}")


def _quoted(text: str) -> str:
    if '"""' in text:
        raise HarnessError(f"{text[:60]!r}… contains triple quotes, which a Modelfile cannot quote.")
    return f'"""{text}"""'


def modelfile(gguf_name: str, template: str, stops: list[str], system: str | None,
              parameters: dict | None = None) -> str:
    """The Modelfile text; `ollama create <name> -f Modelfile` in its directory uses it."""
    lines = [f"FROM ./{gguf_name}", f"TEMPLATE {_quoted(template)}"]
    if system is not None:
        lines.append(f"SYSTEM {_quoted(system)}")
    for stop in dict.fromkeys(s for s in stops if s):
        if '"' in stop:
            raise HarnessError(f"stop token {stop!r} contains a quote, which a Modelfile cannot hold.")
        lines.append(f'PARAMETER stop "{stop}"')
    lines += [f"PARAMETER {k} {v}" for k, v in (parameters or {}).items()]
    return "\n".join(lines) + "\n"
