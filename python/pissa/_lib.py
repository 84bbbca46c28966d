"""The shared library: discovery, version check, struct mirrors, prototypes, errors and logging.

Everything that touches ctypes declarations lives here, so a drift from include/pissa/*.h shows up in one place
(and tests/python/test_layout.py compares every mirrored struct with the C compiler's layout).
"""
import ctypes
import ctypes.util
import glob
import logging
import os
import sys

__version__ = "0.2.0"

from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int, c_int32, c_int64,
                    c_size_t, c_uint, c_uint64, c_void_p)

# ---- discovery ----

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_DIR = os.path.dirname(os.path.dirname(_PKG_DIR))  # python/pissa -> repo, when run from the source tree


def _candidates():
    """Where libpissa is looked for, in order (see docs/python.md)."""
    env = os.environ.get("PISSA_LIBRARY")
    if env:
        # An explicit choice is never second-guessed: if it is wrong, say so rather than load another library.
        return [("PISSA_LIBRARY", os.path.abspath(env))]
    out = []
    builds = sorted(glob.glob(os.path.join(_REPO_DIR, "build*", "libpissa.so")))
    builds.sort(key=lambda p: os.path.basename(os.path.dirname(p)) != "build")  # prefer build/
    out += [("build tree", p) for p in builds]
    for prefix in (sys.prefix, "/usr/local", "/usr"):
        out.append(("install prefix", os.path.join(prefix, "lib", "libpissa.so")))
        out.append(("install prefix", os.path.join(prefix, "lib", "x86_64-linux-gnu", "libpissa.so")))
    found = ctypes.util.find_library("pissa")
    if found:
        out.append(("system loader", found))
    return out


def _check_version(path, number):
    """Major and minor of the loaded library must equal the package's (patch releases are compatible)."""
    major, minor = number // 10000, number // 100 % 100
    want = tuple(int(x) for x in __version__.split(".")[:2])
    if (major, minor) != want:
        raise ImportError(f"pissa: the library {path} is version {major}.{minor}.{number % 100}, but this Python "
                          f"package is {__version__}: major.minor must match (set PISSA_LIBRARY to a matching "
                          f"libpissa.so)")


def _load():
    tried = []
    for how, path in _candidates():
        if how != "system loader" and not os.path.exists(path):
            tried.append(f"{path} ({how}: absent)")
            if how == "PISSA_LIBRARY":
                raise ImportError(f"pissa: PISSA_LIBRARY={path}: no such file")
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            if how == "PISSA_LIBRARY":
                raise ImportError(f"pissa: PISSA_LIBRARY={path}: cannot load: {e}") from None
            tried.append(f"{path} ({how}: {e})")
            continue
        lib.pissa_version_number.restype = c_uint
        lib.pissa_version_number.argtypes = []
        _check_version(path, lib.pissa_version_number())
        return lib, path
    raise ImportError("pissa: libpissa.so not found; build it (cmake --build build) or set PISSA_LIBRARY. Tried: "
                      + "; ".join(tried))


lib, library_path = _load()

# ---- errors ----


class Error(Exception):
    """A libpissa failure: .status (int), .status_name ("PISSA_ERR_IO") and the library's message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.status_name = lib.pissa_status_name(status).decode()  # the library's own spelling
        self.message = message

    def __str__(self):
        return f"{self.message} [{self.status_name}]"


class InvalidArgumentError(Error): pass  # noqa: E701 -- one line per pinned status code
class OutOfMemoryError(Error): pass  # noqa: E701
class FileError(Error): pass  # noqa: E701
class FormatError(Error): pass  # noqa: E701
class UnsupportedError(Error): pass  # noqa: E701
class ShapeError(Error): pass  # noqa: E701
class NotFoundError(Error): pass  # noqa: E701
class NumericError(Error): pass  # noqa: E701


ERRORS = {1: InvalidArgumentError, 2: OutOfMemoryError, 3: FileError, 4: FormatError, 5: UnsupportedError,
          6: ShapeError, 7: NotFoundError, 8: NumericError}


def check(status):
    """Raises the Error subclass of a non-OK status with the calling thread's message."""
    if status != 0:
        msg = lib.pissa_last_error().decode("utf-8", "replace")
        raise ERRORS.get(status, Error)(status, msg)


# ---- struct mirrors (include/pissa/*.h; enums are C ints) ----


class LlamaConfig(Structure):  # config.h
    _fields_ = [("model_type", c_char * 32), ("hidden_size", c_int64), ("intermediate_size", c_int64),
                ("num_hidden_layers", c_int64), ("num_attention_heads", c_int64), ("num_key_value_heads", c_int64),
                ("head_dim", c_int64), ("vocab_size", c_int64), ("max_position_embeddings", c_int64),
                ("rms_norm_eps", c_double), ("rope_theta", c_double), ("tie_word_embeddings", c_int),
                ("hidden_act", c_char * 32), ("has_rope_scaling", c_int), ("attention_bias", c_int),
                ("mlp_bias", c_int), ("torch_dtype", c_char * 16), ("rope_type", c_char * 16),
                ("rope_factor", c_double), ("rope_low_freq_factor", c_double), ("rope_high_freq_factor", c_double),
                ("rope_original_max_position_embeddings", c_int64), ("partial_rotary_factor", c_double),
                ("sliding_window", c_int64), ("use_sliding_window", c_int), ("bias_mask", c_uint),
                ("qk_norm", c_int)]


class RsvdOpts(Structure):  # svd.h
    _fields_ = [("oversample", c_int64), ("niter", c_int), ("seed", c_uint64)]


class InitOpts(Structure):  # adapter.h
    _fields_ = [("kind", c_int), ("rank", c_int64), ("alpha", c_double), ("use_rslora", c_int), ("niter", c_int),
                ("oversample", c_int64), ("seed", c_uint64)]


class AdapterOpts(Structure):  # model.h
    _fields_ = [("targets", c_uint), ("init", InitOpts), ("dropout", c_double), ("qiter", c_int)]


class ModelOpts(Structure):  # model.h
    _fields_ = [("base_dtype", c_int)]


class AdapterView(Structure):  # model.h
    _fields_ = [("module", c_char_p), ("r", c_int64), ("in_", c_int64), ("out", c_int64), ("scale", c_double),
                ("A", POINTER(c_float)), ("B", POINTER(c_float)), ("dA", POINTER(c_float)),
                ("dB", POINTER(c_float))]


class ParamView(Structure):  # model.h
    _fields_ = [("name", c_char_p), ("ndim", c_int), ("rows", c_int64), ("cols", c_int64),
                ("data", POINTER(c_float)), ("grad", POINTER(c_float))]


class OptimOpts(Structure):  # train.h
    _fields_ = [("kind", c_int), ("lr", c_double), ("weight_decay", c_double), ("beta1", c_double),
                ("beta2", c_double), ("eps", c_double), ("momentum", c_double), ("dampening", c_double),
                ("nesterov", c_int)]


class TrainOpts(Structure):  # train.h
    _fields_ = [("optim", OptimOpts), ("schedule", c_int), ("warmup", c_int64), ("total_steps", c_int64),
                ("batch", c_int), ("accum", c_int), ("seq", c_int64), ("max_grad_norm", c_double),
                ("seed", c_uint64), ("shuffle", c_int)]


class StepInfo(Structure):  # train.h
    _fields_ = [("step", c_int64), ("loss", c_double), ("lr", c_double), ("grad_norm", c_double),
                ("tokens", c_int64), ("epoch", c_int64)]


class Row(Structure):  # data.h
    _fields_ = [("input_ids", POINTER(c_int32)), ("labels", POINTER(c_int32)), ("len", c_int64),
                ("position_ids", POINTER(c_int32))]


class DataOpts(Structure):  # data.h
    _fields_ = [("format", c_int), ("max_len", c_int64), ("completion_only_loss", c_int),
                ("assistant_only_loss", c_int), ("chat_template", c_char_p)]


# C name of each mirror, and of fields renamed because they are Python keywords.
STRUCTS = {"pissa_llama_config": LlamaConfig, "pissa_rsvd_opts": RsvdOpts, "pissa_init_opts": InitOpts,
           "pissa_adapter_opts": AdapterOpts, "pissa_model_opts": ModelOpts, "pissa_adapter_view": AdapterView, "pissa_param_view": ParamView,
           "pissa_optim_opts": OptimOpts, "pissa_train_opts": TrainOpts, "pissa_step_info": StepInfo,
           "pissa_row": Row, "pissa_data_opts": DataOpts}
FIELD_C_NAMES = {"in_": "in"}

# ---- prototypes: every C function the package calls ----

P = c_void_p  # opaque handles
Fp = POINTER(c_float)
Ip = POINTER(c_int32)
LOG_FN = CFUNCTYPE(None, c_int, c_char_p, c_void_p)
TOKEN_FN = CFUNCTYPE(c_int, c_void_p, c_int32, POINTER(c_char), c_size_t)
st = c_int  # pissa_status

_PROTOTYPES = {
    # common.h
    "pissa_version_number": (c_uint, []),
    "pissa_version_string": (c_char_p, []),
    "pissa_status_name": (c_char_p, [c_int]),
    "pissa_last_error": (c_char_p, []),
    "pissa_clear_error": (None, []),
    "pissa_set_log_callback": (None, [LOG_FN, c_void_p]),
    "pissa_set_num_threads": (None, [c_int]),
    "pissa_get_num_threads": (c_int, []),
    # tensor.h (adapter matrices of a loaded PEFT adapter are pissa_tensor)
    "pissa_dtype_parse": (st, [c_char_p, POINTER(c_int)]),
    # quant.h
    "pissa_qtype_parse": (st, [c_char_p, POINTER(c_int)]),
    "pissa_qtype_name": (c_char_p, [c_int]),
    "pissa_tensor_data": (Fp, [P]),
    "pissa_tensor_ndim": (c_int, [P]),
    "pissa_tensor_dim": (c_int64, [P, c_int]),
    # svd.h
    "pissa_svd_exact": (st, [Fp, c_int64, c_int64, c_int64, Fp, Fp, Fp]),
    "pissa_rsvd_default_opts": (RsvdOpts, []),
    "pissa_svd_randomized": (st, [Fp, c_int64, c_int64, c_int64, POINTER(RsvdOpts), Fp, Fp, Fp]),
    "pissa_singular_values": (st, [Fp, c_int64, c_int64, Fp]),
    # adapter.h
    "pissa_init_default_opts": (InitOpts, []),
    "pissa_init_parse": (st, [c_char_p, POINTER(InitOpts)]),
    "pissa_init_name": (st, [POINTER(InitOpts), c_char_p, c_size_t]),
    "pissa_lora_scale": (c_double, [c_double, c_int64, c_int]),
    "pissa_adapter_init": (st, [Fp, c_int64, c_int64, POINTER(InitOpts), Fp, Fp, Fp]),
    # checkpoint.h
    "pissa_checkpoint_open": (st, [c_char_p, POINTER(P)]),
    "pissa_checkpoint_free": (None, [P]),
    # model.h
    "pissa_model_load": (st, [c_char_p, POINTER(P)]),
    "pissa_model_default_opts": (ModelOpts, []),
    "pissa_model_load_with_opts": (st, [c_char_p, POINTER(ModelOpts), POINTER(P)]),
    "pissa_model_free": (None, [P]),
    "pissa_model_config": (POINTER(LlamaConfig), [P]),
    "pissa_proj_parse": (st, [c_char_p, POINTER(c_uint)]),
    "pissa_proj_names": (st, [c_uint, c_char_p, c_size_t]),
    "pissa_adapter_default_opts": (AdapterOpts, []),
    "pissa_model_add_adapters": (st, [P, POINTER(AdapterOpts)]),
    "pissa_model_load_adapter": (st, [P, c_char_p]),
    "pissa_model_save_adapter": (st, [P, c_char_p, c_int]),
    "pissa_model_adapter_count": (c_size_t, [P]),
    "pissa_model_adapter_name": (c_char_p, [P, c_size_t]),
    "pissa_model_adapter_find": (st, [P, c_char_p, POINTER(c_size_t)]),
    "pissa_model_adapter": (st, [P, c_size_t, POINTER(AdapterView)]),
    "pissa_model_save": (st, [P, c_char_p, c_int]),
    "pissa_model_zero_grad": (None, [P]),
    "pissa_model_set_training": (None, [P, c_int, c_uint64]),
    "pissa_model_logits": (st, [P, Ip, c_int, c_int, Fp]),
    "pissa_model_loss": (st, [P, Ip, Ip, c_int, c_int, POINTER(c_double), POINTER(c_int64)]),
    "pissa_model_forward_backward": (st, [P, Ip, Ip, c_int, c_int, c_float, POINTER(c_double), POINTER(c_int64)]),
    "pissa_model_loss_packed": (st, [P, Ip, Ip, Ip, c_int, c_int, POINTER(c_double), POINTER(c_int64)]),
    "pissa_model_forward_backward_packed": (st, [P, Ip, Ip, Ip, c_int, c_int, c_float, POINTER(c_double),
                                                 POINTER(c_int64)]),
    "pissa_model_arena_bytes": (c_size_t, [P]),
    "pissa_model_set_grad_checkpoint": (None, [P, c_int]),
    "pissa_model_grad_checkpoint": (c_int, [P]),
    "pissa_model_set_full_finetune": (st, [P]),
    "pissa_model_full_finetune": (c_int, [P]),
    "pissa_model_param_count": (c_size_t, [P]),
    "pissa_model_param": (st, [P, c_size_t, POINTER(ParamView)]),
    # data.h
    "pissa_dataset_load_jsonl": (st, [c_char_p, c_int32, POINTER(P)]),
    "pissa_dataset_from_text": (st, [P, c_char_p, c_size_t, c_int64, POINTER(P)]),
    "pissa_dataset_from_rows": (st, [Ip, Ip, POINTER(c_int64), c_size_t, c_int32, POINTER(P)]),
    "pissa_dataset_load_text": (st, [c_char_p, P, c_int64, POINTER(P)]),
    "pissa_dataset_free": (None, [P]),
    "pissa_dataset_count": (c_size_t, [P]),
    "pissa_dataset_total_tokens": (c_int64, [P]),
    "pissa_dataset_max_len": (c_int64, [P]),
    "pissa_dataset_row": (st, [P, c_size_t, POINTER(Row)]),
    "pissa_data_default_opts": (DataOpts, []),
    "pissa_data_format_parse": (st, [c_char_p, POINTER(c_int)]),
    "pissa_data_detect_format": (st, [c_char_p, POINTER(c_int)]),
    "pissa_dataset_load": (st, [c_char_p, P, c_int32, POINTER(DataOpts), POINTER(P)]),
    "pissa_dataset_pack": (st, [P, c_int64, POINTER(P)]),
    "pissa_dataset_is_packed": (c_int, [P]),
    "pissa_row_encoder_create": (st, [P, POINTER(DataOpts), POINTER(P)]),
    "pissa_row_encoder_free": (None, [P]),
    "pissa_row_encoder_encode": (st, [P, c_char_p, c_size_t, POINTER(Row)]),
    # train.h
    "pissa_optim_default_opts": (OptimOpts, []),
    "pissa_optim_kind_parse": (st, [c_char_p, POINTER(c_int)]),
    "pissa_schedule_parse": (st, [c_char_p, POINTER(c_int)]),
    "pissa_train_default_opts": (TrainOpts, []),
    "pissa_trainer_create": (st, [P, P, POINTER(TrainOpts), POINTER(P)]),
    "pissa_trainer_create_comm": (st, [P, P, POINTER(TrainOpts), P, POINTER(P)]),
    "pissa_trainer_free": (None, [P]),
    "pissa_trainer_step": (st, [P, POINTER(StepInfo)]),
    "pissa_trainer_steps": (c_int64, [P]),
    "pissa_trainer_evaluate": (st, [P, P, POINTER(c_double), POINTER(c_int64)]),
    "pissa_trainer_save": (st, [P, c_char_p]),
    "pissa_trainer_save_peft": (st, [P, P, c_char_p]),
    "pissa_trainer_save_state": (st, [P, c_char_p]),
    "pissa_trainer_load_state": (st, [P, c_char_p]),
    # tokenizer.h
    "pissa_tokenizer_load": (st, [c_char_p, c_int32, POINTER(P)]),
    "pissa_tokenizer_free": (None, [P]),
    "pissa_tokenizer_vocab_size": (c_int32, [P]),
    "pissa_tokenizer_piece": (POINTER(c_char), [P, c_int32, POINTER(c_size_t)]),
    "pissa_tokenizer_score": (c_float, [P, c_int32]),
    "pissa_tokenizer_encode": (st, [P, c_char_p, c_size_t, c_int, c_int, Ip, c_size_t, POINTER(c_size_t)]),
    "pissa_tokenizer_decode": (st, [P, Ip, c_size_t, c_char_p, c_size_t, POINTER(c_size_t)]),
    "pissa_tokenizer_get_kind": (c_int, [P]),
    "pissa_tokenizer_token_to_id": (c_int32, [P, c_char_p, c_size_t]),
    "pissa_tokenizer_max_tokens": (c_size_t, [P, c_size_t]),
    "pissa_tokenizer_encode_text": (st, [P, c_char_p, c_size_t, c_int, Ip, c_size_t, POINTER(c_size_t)]),
    "pissa_tokenizer_decode_text": (st, [P, Ip, c_size_t, c_int, c_char_p, c_size_t, POINTER(c_size_t)]),
    "pissa_tokenizer_special_id": (c_int32, [P, c_int]),
    "pissa_tokenizer_special_token": (c_char_p, [P, c_int]),
    "pissa_tokenizer_is_special": (c_int, [P, c_int32]),
    "pissa_tokenizer_chat_template": (c_char_p, [P]),
    "pissa_tokenizer_stop_ids": (None, [P, POINTER(Ip), POINTER(c_size_t)]),
    "pissa_token_stream_create": (st, [P, c_int, POINTER(P)]),
    "pissa_token_stream_free": (None, [P]),
    "pissa_token_stream_put": (st, [P, c_int32, POINTER(POINTER(c_char)), POINTER(c_size_t)]),
    "pissa_token_stream_finish": (st, [P, POINTER(POINTER(c_char)), POINTER(c_size_t)]),
    # generate.h
    "pissa_generator_create": (st, [c_char_p, c_char_p, c_int64, POINTER(P)]),
    "pissa_generator_create_with_opts": (st, [c_char_p, c_char_p, c_int64, POINTER(ModelOpts), POINTER(P)]),
    "pissa_generator_free": (None, [P]),
    "pissa_generator_vocab_size": (c_int64, [P]),
    "pissa_generator_max_seq_len": (c_int64, [P]),
    "pissa_generator_forward": (st, [P, c_int32, c_int64, Fp]),
    "pissa_generate": (st, [P, P, c_char_p, c_int64, c_float, c_float, c_uint64, TOKEN_FN, c_void_p,
                            POINTER(c_int64)]),
    "pissa_generate_tokens": (st, [P, P, Ip, c_size_t, c_int64, c_float, c_float, c_uint64, TOKEN_FN, c_void_p,
                                   POINTER(c_int64)]),
    # chat.h
    "pissa_chat_template_render": (st, [c_char_p, c_char_p, c_int, c_char_p, POINTER(c_void_p),
                                        POINTER(c_size_t)]),
    "pissa_chat_apply": (st, [P, c_char_p, c_char_p, c_int, c_char_p, POINTER(c_void_p), POINTER(c_size_t)]),
    # peft.h
    "pissa_peft_config_create": (st, [POINTER(P)]),
    "pissa_peft_config_parse": (st, [c_char_p, c_size_t, c_char_p, POINTER(P)]),
    "pissa_peft_config_clone": (st, [P, POINTER(P)]),
    "pissa_peft_config_free": (None, [P]),
    "pissa_peft_config_to_json": (st, [P, POINTER(c_void_p)]),
    "pissa_peft_config_get": (st, [P, c_char_p, POINTER(c_void_p)]),
    "pissa_peft_config_set": (st, [P, c_char_p, c_char_p]),
    "pissa_peft_adapter_create": (st, [P, POINTER(P)]),
    "pissa_peft_adapter_free": (None, [P]),
    "pissa_peft_adapter_config": (P, [P]),
    "pissa_peft_adapter_add": (st, [P, c_char_p, c_int64, c_int64, c_int64, Fp, Fp]),
    "pissa_peft_adapter_count": (c_size_t, [P]),
    "pissa_peft_adapter_module": (st, [P, c_size_t, POINTER(c_char_p), POINTER(P), POINTER(P)]),
    "pissa_peft_adapter_save": (st, [P, c_char_p, c_int]),
    "pissa_peft_adapter_load": (st, [c_char_p, POINTER(P)]),
    # interop.h
    "pissa_peft_pissa_to_lora": (st, [P, P, c_char_p, POINTER(P)]),
    "pissa_peft_merge_checkpoint": (st, [P, P, c_int, c_int, c_char_p]),
    "pissa_llama2c_export_hf": (st, [c_char_p, P, c_int, c_int, c_char_p]),
    # comm.h
    "pissa_mpi_available": (c_int, []),
    "pissa_mpi_init": (st, []),
    "pissa_mpi_finalize": (st, []),
    "pissa_comm_create": (st, [c_void_p, POINTER(P)]),
    "pissa_comm_free": (None, [P]),
    "pissa_comm_rank": (c_int, [P]),
    "pissa_comm_size": (c_int, [P]),
    "pissa_comm_agree": (st, [P, c_int, c_char_p]),
    # common.h
    "pissa_free": (None, [c_void_p]),
}

for _name, (_res, _args) in _PROTOTYPES.items():
    try:
        _f = getattr(lib, _name)
    except AttributeError:
        raise ImportError(f"pissa: {library_path} lacks {_name}: rebuild the library") from None
    _f.restype = _res
    _f.argtypes = _args



# ---- logging: the library's log callback goes to logging.getLogger("pissa") ----

logger = logging.getLogger("pissa")
_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}


def _on_log(level, message, user):
    try:  # an exception must not cross into C: ctypes would print it and carry on, but do not rely on that
        logger.log(_LEVELS.get(level, logging.DEBUG), "%s", message.decode("utf-8", "replace") if message else "")
    except Exception:  # pragma: no cover - logging itself failing
        pass


_log_callback = LOG_FN(_on_log)  # kept for the life of the process: C holds the pointer
lib.pissa_set_log_callback(_log_callback, None)


def cstr(s, what="argument"):
    """A path or name as bytes for a char* argument."""
    if isinstance(s, bytes):
        return s
    if isinstance(s, os.PathLike):
        s = os.fspath(s)
    if isinstance(s, str):
        return os.fsencode(s)
    raise TypeError(f"{what}: expected a str, bytes or path, got {type(s).__name__}")


def parse_enum(fn, text, what):
    """The C enum value FN (a pissa_*_parse) gives for TEXT; the library's error names what it accepts."""
    out = c_int()
    check(fn(cstr(text, what), ctypes.byref(out)))
    return out.value


def dtype_code(dtype):
    """'f32' / 'bf16' / 'float16' / ... -> pissa_dtype value."""
    return parse_enum(lib.pissa_dtype_parse, dtype, "dtype")


def model_opts(base_dtype=None):
    """pissa_model_opts: BASE_DTYPE 'f32' / 'bf16' / 'f16' / 'nf4' / 'int8' for the frozen projections, or None (as
    the checkpoint stores them)."""
    o = lib.pissa_model_default_opts()
    if base_dtype is not None:
        o.base_dtype = parse_enum(lib.pissa_qtype_parse, base_dtype, "base_dtype")
    return o
