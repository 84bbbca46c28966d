"""The llama2.c tokenizer and text generation."""
import ctypes
from ctypes import byref, c_int32, c_int64, c_size_t, c_void_p

from . import _core
from ._lib import TOKEN_FN, check, cstr, lib


class Tokenizer(_core.Handle):
    """A llama2.c tokenizer file (pissa_tokenizer): encode(text) -> list of ids, decode(ids) -> str."""

    _kind = "Tokenizer"

    def __init__(self, path, vocab_size=0):
        h = c_void_p()
        check(lib.pissa_tokenizer_load(cstr(path, "path"), vocab_size, byref(h)))
        self._init_handle(h.value, lib.pissa_tokenizer_free)

    @property
    def vocab_size(self):
        return lib.pissa_tokenizer_vocab_size(self._h)

    def encode(self, text, bos=True, eos=False):
        """Token ids of TEXT (str as UTF-8, or bytes), exactly as llama2.c's run.c encodes it."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        n = c_size_t()
        cap = len(data) + 3  # PISSA_TOKENIZER_MAX_TOKENS
        ids = (c_int32 * cap)()
        check(lib.pissa_tokenizer_encode(self._h, data, len(data), int(bool(bos)), int(bool(eos)), ids, cap,
                                         byref(n)))
        return ids[:n.value]

    def decode_bytes(self, ids):
        """The bytes IDS print as (BOS and EOS print nothing)."""
        b = _core.as_input(ids, "ids", "i", (1,))
        n = b.shape[0]
        size = c_size_t()
        lib.pissa_tokenizer_decode(self._h, b.ptr, n, None, 0, byref(size))  # size query; errors come below
        buf = ctypes.create_string_buffer(size.value + 1)
        check(lib.pissa_tokenizer_decode(self._h, b.ptr, n, buf, len(buf), byref(size)))
        return buf.raw[:size.value]

    def decode(self, ids, errors="replace"):
        return self.decode_bytes(ids).decode("utf-8", errors)

    def piece(self, token):
        """The piece of TOKEN as stored in the file (bytes)."""
        n = c_size_t()
        p = lib.pissa_tokenizer_piece(self._h, token, byref(n))
        if not p:
            raise IndexError(f"token {token} out of range [0, {self.vocab_size})")
        return ctypes.string_at(p, n.value)

    def score(self, token):
        return lib.pissa_tokenizer_score(self._h, token)


class Generator(_core.Handle):
    """Text generation (pissa_generator) from a Hugging Face folder or llama2.c file, optionally through a PEFT
    adapter, with a tokenizer (a Tokenizer or a path). generate(prompt, ...) returns the text."""

    _kind = "Generator"

    def __init__(self, model_path, tokenizer, adapter=None, max_seq_len=0):
        h = c_void_p()
        check(lib.pissa_generator_create(cstr(model_path, "model_path"),
                                         cstr(adapter, "adapter") if adapter is not None else None, max_seq_len,
                                         byref(h)))
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
        """run.c's generate(): the prompt (with BOS) then sampled tokens, until STEPS positions or BOS. Returns
        the text (the prompt included, as pissa-generate prints it). CALLBACK(token, piece_bytes), called for each
        emitted token, may return True to stop. An exception in it stops generation and is re-raised here."""
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
        text = prompt.encode() if isinstance(prompt, str) else prompt
        check(lib.pissa_generate(self._h, self.tokenizer._h, text, steps, temperature, topp, seed, fn, None,
                                 byref(n)))
        if error:
            raise error[0]
        self.positions = n.value
        return b"".join(pieces).decode("utf-8", "replace")
