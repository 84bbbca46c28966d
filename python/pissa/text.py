"""Tokenizers (llama2.c tokenizer.bin, Hugging Face tokenizer.json) and text generation."""
import ctypes
import json
import os
from ctypes import POINTER, byref, c_char, c_int32, c_int64, c_size_t, c_void_p

from . import _core
from ._lib import TOKEN_FN, Ip, Row, check, cstr, lib, model_opts


_SPECIALS = {"bos": 0, "eos": 1, "unk": 2, "pad": 3}


def data_opts(completion_only_loss=True, assistant_only_loss=True, chat_template=None, max_len=0, format="auto"):
    """pissa_data_opts with these values (docs/data.md); returns (struct, the bytes it points into)."""
    o = lib.pissa_data_default_opts()
    o.completion_only_loss = int(bool(completion_only_loss))
    o.assistant_only_loss = int(bool(assistant_only_loss))
    o.max_len = max_len
    fmt = ctypes.c_int()
    check(lib.pissa_data_format_parse(cstr(format, "format"), byref(fmt)))
    o.format = fmt.value
    keep = cstr(chat_template, "chat_template") if chat_template is not None else None
    o.chat_template = keep
    return o, keep


def _messages_json(conversation):
    if isinstance(conversation, (str, bytes)):
        return conversation.encode() if isinstance(conversation, str) else bytes(conversation)
    return json.dumps(list(conversation), ensure_ascii=False).encode()


class RowEncoder(_core.Handle):
    """pissa_row_encoder: one training row (a dict in any of TRL's formats, or its JSON text) -> (input_ids, labels),
    exactly as pissa.Dataset.load encodes the rows of a file. Keeps the tokenizer alive."""

    _kind = "RowEncoder"

    def __init__(self, tokenizer, completion_only_loss=True, assistant_only_loss=True, chat_template=None):
        o, keep = data_opts(completion_only_loss, assistant_only_loss, chat_template)
        h = c_void_p()
        check(lib.pissa_row_encoder_create(tokenizer._h if tokenizer is not None else None, byref(o), byref(h)))
        del keep  # the template is parsed by now
        self._init_handle(h.value, lib.pissa_row_encoder_free, parents=(tokenizer,) if tokenizer is not None else ())

    def encode(self, row):
        """(input_ids, labels) of ROW (labels -100 where there is no target)."""
        data = row if isinstance(row, (str, bytes)) else json.dumps(row, ensure_ascii=False)
        data = data.encode() if isinstance(data, str) else bytes(data)
        r = Row()
        check(lib.pissa_row_encoder_encode(self._h, data, len(data), byref(r)))
        return [r.input_ids[i] for i in range(r.len)], [r.labels[i] for i in range(r.len)]


class Tokenizer(_core.Handle):
    """A tokenizer (pissa_tokenizer): a llama2.c tokenizer.bin, a Hugging Face tokenizer.json, or a folder holding
    tokenizer.json (with its tokenizer_config.json). encode(text) -> list of ids, decode(ids) -> str, as
    transformers' tokenizer(text)["input_ids"] and tokenizer.decode(ids) give them."""

    _kind = "Tokenizer"

    def __init__(self, path, vocab_size=0):
        h = c_void_p()
        check(lib.pissa_tokenizer_load(cstr(path, "path"), vocab_size, byref(h)))
        self._init_handle(h.value, lib.pissa_tokenizer_free)

    @property
    def vocab_size(self):
        """Number of ids: ids are range(vocab_size) (a tokenizer.json may leave some without a token)."""
        return lib.pissa_tokenizer_vocab_size(self._h)

    def __len__(self):
        return self.vocab_size

    @property
    def kind(self):
        """"llama2c" or "hf" (tokenizer.json)."""
        return "hf" if lib.pissa_tokenizer_get_kind(self._h) == 1 else "llama2c"

    def encode(self, text, add_special_tokens=True, bos=None, eos=None):
        """Token ids of TEXT (str, or UTF-8 bytes). By default as transformers' tokenizer(text, add_special_tokens=
        ADD_SPECIAL_TOKENS)["input_ids"] (a llama2.c tokenizer: run.c's encode, BOS first when ADD_SPECIAL_TOKENS).
        Giving BOS or EOS (booleans) instead encodes without the special tokens and puts the bos token first / the
        eos token last as asked (BOS defaults to True then, EOS to False: run.c's encode(text, bos, eos))."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        n = c_size_t()
        cap = lib.pissa_tokenizer_max_tokens(self._h, len(data))
        ids = (c_int32 * max(cap, 1))()
        if bos is None and eos is None:
            check(lib.pissa_tokenizer_encode_text(self._h, data, len(data), int(bool(add_special_tokens)), ids, cap,
                                                  byref(n)))
        else:
            check(lib.pissa_tokenizer_encode(self._h, data, len(data), int(bos is None or bool(bos)), int(bool(eos)),
                                             ids, cap, byref(n)))
        return ids[:n.value]

    def __call__(self, text, add_special_tokens=True):
        """{"input_ids": encode(text, add_special_tokens)}, like a transformers tokenizer's call."""
        return {"input_ids": self.encode(text, add_special_tokens)}

    def decode_bytes(self, ids, skip_special_tokens=False):
        """The UTF-8 bytes decode(ids, skip_special_tokens) gives (a llama2.c tokenizer: raw bytes, BOS and EOS
        printing nothing)."""
        b = _core.as_input(ids, "ids", "i", (1,))
        n = b.shape[0]
        size = c_size_t()
        lib.pissa_tokenizer_decode_text(self._h, b.ptr, n, int(bool(skip_special_tokens)), None, 0, byref(size))
        buf = ctypes.create_string_buffer(size.value + 1)  # the size query above; errors come below
        check(lib.pissa_tokenizer_decode_text(self._h, b.ptr, n, int(bool(skip_special_tokens)), buf, len(buf),
                                              byref(size)))
        return buf.raw[:size.value]

    def decode(self, ids, skip_special_tokens=False, errors="replace"):
        """Text of IDS, as transformers' tokenizer.decode(ids, skip_special_tokens=...) gives it (with
        clean_up_tokenization_spaces when tokenizer_config.json sets it)."""
        return self.decode_bytes(ids, skip_special_tokens).decode("utf-8", errors)

    def piece(self, token):
        """The token string of TOKEN as stored (bytes): the llama2.c piece, or the tokenizer.json token."""
        n = c_size_t()
        p = lib.pissa_tokenizer_piece(self._h, token, byref(n))
        if not p:
            raise IndexError(f"token {token} has no string (ids are range({self.vocab_size}))")
        return ctypes.string_at(p, n.value)

    def id_to_token(self, token):
        """The token string of TOKEN (str), or None when it has none."""
        try:
            return self.piece(token).decode("utf-8", "replace")
        except IndexError:
            return None

    def token_to_id(self, token):
        """The id of the token string TOKEN, or None when there is none."""
        data = token.encode() if isinstance(token, str) else bytes(token)
        i = lib.pissa_tokenizer_token_to_id(self._h, data, len(data))
        return None if i < 0 else i

    def convert_tokens_to_ids(self, tokens):
        return self.token_to_id(tokens) if isinstance(tokens, (str, bytes)) else [self.token_to_id(t) for t in tokens]

    def score(self, token):
        return lib.pissa_tokenizer_score(self._h, token)

    def is_special(self, token):
        return bool(lib.pissa_tokenizer_is_special(self._h, token))

    def _special_id(self, which):
        i = lib.pissa_tokenizer_special_id(self._h, _SPECIALS[which])
        return None if i < 0 else i

    def _special_token(self, which):
        s = lib.pissa_tokenizer_special_token(self._h, _SPECIALS[which])
        return None if s is None else s.decode()

    bos_token_id = property(lambda self: self._special_id("bos"), doc="None when absent")
    eos_token_id = property(lambda self: self._special_id("eos"), doc="None when absent")
    unk_token_id = property(lambda self: self._special_id("unk"), doc="None when absent")
    pad_token_id = property(lambda self: self._special_id("pad"), doc="None when absent")
    bos_token = property(lambda self: self._special_token("bos"), doc="None when absent (always for llama2.c)")
    eos_token = property(lambda self: self._special_token("eos"), doc="None when absent (always for llama2.c)")
    unk_token = property(lambda self: self._special_token("unk"), doc="None when absent (always for llama2.c)")
    pad_token = property(lambda self: self._special_token("pad"), doc="None when absent (always for llama2.c)")

    @property
    def all_special_ids(self):
        return [i for i in range(self.vocab_size) if lib.pissa_tokenizer_is_special(self._h, i)]

    @property
    def chat_template(self):
        """The Jinja chat template of tokenizer_config.json (or chat_template.jinja), None when there is none."""
        s = lib.pissa_tokenizer_chat_template(self._h)
        return None if s is None else s.decode()

    @property
    def stop_ids(self):
        """Ids that end a generation: eos, generation_config.json's eos_token_id, end-of-turn tokens."""
        p = Ip()
        n = c_size_t()
        lib.pissa_tokenizer_stop_ids(self._h, byref(p), byref(n))
        return [p[i] for i in range(n.value)]

    def apply_chat_template(self, conversation, tools=None, add_generation_prompt=False, tokenize=True,
                            return_dict=False, return_assistant_tokens_mask=False, chat_template=None, **kwargs):
        """transformers' tokenizer.apply_chat_template: CONVERSATION (a list of {"role", "content", ...} dicts, or
        their JSON text) rendered by the chat template (CHAT_TEMPLATE, a Jinja source, or the tokenizer's) with the
        tokenizer's special tokens, TOOLS and the extra template variables KWARGS (e.g. enable_thinking=False).
        TOKENIZE False: the text. True: its ids, encoded without special tokens (the template writes them); with
        RETURN_DICT, {"input_ids", "attention_mask"}, and with RETURN_ASSISTANT_TOKENS_MASK also "assistant_masks"
        (1 on the tokens of the assistant turns, each with its end-of-turn token: the targets pissa.Dataset gives a
        {"messages"} row, docs/data.md)."""
        if return_assistant_tokens_mask and (not tokenize or not return_dict or add_generation_prompt):
            raise ValueError("return_assistant_tokens_mask needs tokenize=True, return_dict=True and "
                             "add_generation_prompt=False")
        extra = dict(kwargs)
        if tools is not None:
            extra["tools"] = tools
        p, n = c_void_p(), c_size_t()
        check(lib.pissa_chat_apply(self._h, cstr(chat_template, "chat_template") if chat_template is not None else
                                   None, _messages_json(conversation), int(bool(add_generation_prompt)),
                                   json.dumps(extra, ensure_ascii=False).encode() if extra else None, byref(p),
                                   byref(n)))
        try:
            text = ctypes.string_at(p, n.value).decode("utf-8")
        finally:
            lib.pissa_free(p)
        if not tokenize:
            return text
        ids = self.encode(text, add_special_tokens=False)
        if not return_dict:
            return ids
        out = {"input_ids": ids, "attention_mask": [1] * len(ids)}
        if return_assistant_tokens_mask:
            row = {"messages": json.loads(_messages_json(conversation))}
            if tools is not None:
                row["tools"] = tools
            if kwargs:
                row["chat_template_kwargs"] = kwargs
            got, labels = RowEncoder(self, chat_template=chat_template).encode(row)
            if got != ids:
                raise RuntimeError("apply_chat_template: the row encoder tokenized the conversation differently")
            out["assistant_masks"] = [int(x != -100) for x in labels]
        return out

    def encode_row(self, row, completion_only_loss=True, assistant_only_loss=True, chat_template=None):
        """(input_ids, labels) of a training row (a dict in any of TRL's formats, or its JSON text), as
        pissa.Dataset.load and pissa-tokenize --chat encode it (docs/data.md)."""
        return RowEncoder(self, completion_only_loss, assistant_only_loss, chat_template).encode(row)

    def stream(self, skip_special_tokens=True):
        """A TokenStream that turns ids arriving one at a time into text (for printing during generation)."""
        return TokenStream(self, skip_special_tokens)


class TokenStream(_core.Handle):
    """Incremental decoding (pissa_token_stream): put(id) returns the text that became final with ID (a character
    split over byte-level tokens comes out whole); finish() returns what is held back. The concatenation is
    decode(ids) without transformers' clean_up_tokenization_spaces, as tokenizers' DecodeStream gives it."""

    _kind = "TokenStream"

    def __init__(self, tokenizer, skip_special_tokens=True):
        h = c_void_p()
        check(lib.pissa_token_stream_create(tokenizer._h, int(bool(skip_special_tokens)), byref(h)))
        self._init_handle(h.value, lib.pissa_token_stream_free, parents=(tokenizer,))  # it borrows the tokenizer

    def put_bytes(self, token):
        p = POINTER(c_char)()
        n = c_size_t()
        check(lib.pissa_token_stream_put(self._h, token, byref(p), byref(n)))
        return ctypes.string_at(p, n.value) if n.value else b""

    def put(self, token):
        return self.put_bytes(token).decode("utf-8", "replace")

    def finish(self):
        p = POINTER(c_char)()
        n = c_size_t()
        check(lib.pissa_token_stream_finish(self._h, byref(p), byref(n)))
        return (ctypes.string_at(p, n.value) if n.value else b"").decode("utf-8", "replace")


class Generator(_core.Handle):
    """Text generation (pissa_generator) from a Hugging Face folder or llama2.c file, optionally through a PEFT
    adapter, with a tokenizer (a Tokenizer or a path; None: the model folder's tokenizer.json), the frozen base in
    BASE_DTYPE (as Model). generate(prompt, ...) returns the text."""

    _kind = "Generator"

    def __init__(self, model_path, tokenizer=None, adapter=None, max_seq_len=0, base_dtype=None):
        if tokenizer is None:
            if not os.path.isfile(os.path.join(str(model_path), "tokenizer.json")):
                raise ValueError(f"no tokenizer given, and {model_path} holds no tokenizer.json")
            tokenizer = str(model_path)
        h = c_void_p()
        o = model_opts(base_dtype)
        check(lib.pissa_generator_create_with_opts(cstr(model_path, "model_path"),
                                                   cstr(adapter, "adapter") if adapter is not None else None,
                                                   max_seq_len, byref(o), byref(h)))
        self._init_handle(h.value, lib.pissa_generator_free)
        self.tokenizer = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer(tokenizer, self.vocab_size)

    @property
    def vocab_size(self):
        return lib.pissa_generator_vocab_size(self._h)

    @property
    def max_seq_len(self):
        return lib.pissa_generator_max_seq_len(self._h)

    def forward(self, token, pos):
        """Next-token logits (V,) after running TOKEN at position POS (positions before must have been run)."""
        out, p = _core.new_output((self.vocab_size,))
        check(lib.pissa_generator_forward(self._h, token, pos, p))
        return out

    def generate(self, prompt="", steps=256, temperature=1.0, topp=0.9, seed=0, callback=None):
        """run.c's generate(): the prompt then sampled tokens, until STEPS positions or the tokenizer's end (BOS for
        llama2.c, a stop id for a tokenizer.json). Returns the text (the prompt included, as pissa-generate prints
        it). CALLBACK(token, piece_bytes), called for each emitted token, may return True to stop. An exception in
        it stops generation and is re-raised here."""
        text = prompt.encode() if isinstance(prompt, str) else prompt
        return self._run(callback, lambda fn, n: lib.pissa_generate(self._h, self.tokenizer._h, text, steps,
                                                                    temperature, topp, seed, fn, None, n))

    def _run(self, callback, call):
        """CALL(fn, n_positions) with a TOKEN_FN that collects the pieces and passes them to CALLBACK; the text."""
        pieces, error = [], []

        def on_token(user, token, piece, length):
            try:  # nothing may propagate into C: record, stop, re-raise after the call returns
                b = ctypes.string_at(piece, length)
                pieces.append(b)
                return 1 if callback is not None and callback(token, b) else 0
            except BaseException as e:  # noqa: B902 - KeyboardInterrupt too must not cross into C
                error.append(e)
                return 1

        fn = TOKEN_FN(on_token)
        n = c_int64()
        check(call(fn, byref(n)))
        if error:
            raise error[0]
        self.positions = n.value
        return b"".join(pieces).decode("utf-8", "replace")

    def chat(self, conversation, system=None, steps=256, temperature=1.0, topp=0.9, seed=0, callback=None,
             chat_template=None, **kwargs):
        """One assistant turn: CONVERSATION (a user message as a str, or a list of messages) rendered by the chat
        template with add_generation_prompt (SYSTEM, if given, as a first system message; KWARGS as template
        variables), then tokens sampled until the tokenizer's eos or end-of-turn token or STEPS positions. Returns
        the reply's text (the prompt is not included). CALLBACK as in generate()."""
        messages = [{"role": "user", "content": conversation}] if isinstance(conversation, str) else list(conversation)
        if system is not None:
            messages = [{"role": "system", "content": system}] + messages
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, chat_template=chat_template,
                                                 **kwargs)
        buf = (c_int32 * max(len(ids), 1))(*ids)
        return self._run(callback, lambda fn, n: lib.pissa_generate_tokens(self._h, self.tokenizer._h, buf, len(ids),
                                                                           steps, temperature, topp, seed, fn, None, n))
