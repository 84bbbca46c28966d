"""A trainable Llama model with LoRA/PiSSA adapters, data sets, and the trainer."""
import array
import collections
import ctypes
import os
from ctypes import byref, c_double, c_int64, c_size_t, c_uint, c_void_p

from . import _core
from ._lib import AdapterView as _AdapterViewStruct
from ._lib import LlamaConfig, ParamView, Row, StepInfo as _StepInfoStruct, check, cstr, dtype_code, lib, model_opts, parse_enum
from .linalg import init_opts
from .peft import PeftAdapter, PeftConfig

_INT_MAX = 2**31 - 1


def _loss_result(fn, *args, return_count):
    """Calls FN(*args, &loss, &count) and returns the loss, or (loss, count) with RETURN_COUNT."""
    loss, count = c_double(), c_int64()
    check(fn(*args, byref(loss), byref(count)))
    return (loss.value, count.value) if return_count else loss.value


def _struct_dict(s):
    out = {}
    for name, _ in s._fields_:
        v = getattr(s, name)
        out[name] = v.decode() if isinstance(v, bytes) else v
    return out


class Config(collections.namedtuple("Config", [f for f, _ in LlamaConfig._fields_])):
    """The model's Hugging Face LlamaConfig fields (pissa_llama_config), read-only."""


def targets_mask(targets):
    """"q_proj,v_proj", "all-linear", a list of projection names, or a pissa_proj bit mask -> the mask."""
    if isinstance(targets, int) and not isinstance(targets, bool):
        return targets
    if not isinstance(targets, str):
        targets = ",".join(targets)
    mask = c_uint()
    check(lib.pissa_proj_parse(targets.encode(), byref(mask)))
    return mask.value


def target_names(mask):
    buf = ctypes.create_string_buffer(256)
    check(lib.pissa_proj_names(mask, buf, len(buf)))
    return buf.value.decode().split(",") if buf.value else []


def _ids_labels(ids, labels):
    """(B, T) int32 buffers of ids and labels (labels default to ids, the causal-LM convention)."""
    i = _core.as_input(ids, "ids", "i", (1, 2))
    shape = i.shape if len(i.shape) == 2 else (1,) + i.shape
    if labels is None:
        lab = i
    else:
        lab = _core.as_input(labels, "labels", "i", (1, 2))
        lshape = lab.shape if len(lab.shape) == 2 else (1,) + lab.shape
        if lshape != shape:
            raise ValueError(f"labels: shape {lab.shape} differs from ids {i.shape}")
    B, T = shape
    if B < 1 or T < 1 or B > _INT_MAX or T > _INT_MAX:
        raise ValueError(f"ids: shape {i.shape} must have at least one row and one column")
    return i, lab, B, T


class AdapterView:
    """One adapter of a model: module, r, in_features, out_features, scale, and A (r, in), B (out, r), dA, dB as
    arrays viewing the model's memory (writable; they keep the model's memory alive)."""

    __slots__ = ("module", "r", "in_features", "out_features", "scale", "A", "B", "dA", "dB")

    def __repr__(self):
        return (f"AdapterView({self.module!r}, r={self.r}, in={self.in_features}, out={self.out_features}, "
                f"scale={self.scale})")


class Model(_core.Handle):
    """A causal LM loaded from a Hugging Face folder or a llama2.c .bin (pissa_model). BASE_DTYPE puts the frozen
    projections in 'f32', 'bf16', 'f16', 'nf4' or 'int8' (None: as the checkpoint stores them). Not thread-safe."""

    _kind = "Model"

    def __init__(self, path, base_dtype=None):
        h = c_void_p()
        o = model_opts(base_dtype)
        check(lib.pissa_model_load_with_opts(cstr(path, "path"), byref(o), byref(h)))
        self._init_handle(h.value, lib.pissa_model_free)
        self.path = os.fspath(path)
        self._peft = None  # the adapter config, once adapters are attached

    @classmethod
    def load(cls, path, base_dtype=None):
        return cls(path, base_dtype)

    @property
    def config(self):
        return Config(**_struct_dict(lib.pissa_model_config(self._h).contents))

    @property
    def vocab_size(self):
        return lib.pissa_model_config(self._h).contents.vocab_size

    # ---- adapters ----

    def add_adapters(self, method="pissa", rank=8, alpha=None, targets="q_proj,v_proj", *, rslora=False,
                     dropout=0.0, seed=0, niter=None, oversample=None, qiter=1):
        """Attaches an adapter to every targeted projection of every layer, initialised as PEFT's
        init_lora_weights=METHOD does ("pissa", "pissa_niter_N", "lora", "gaussian"). alpha defaults to rank
        (scale 1, as the PiSSA paper); module i uses seed + i. On an NF4 or INT8 base the PiSSA methods are QPiSSA
        with QITER rounds."""
        o = lib.pissa_adapter_default_opts()
        o.targets = targets_mask(targets)
        o.init = init_opts(method, rank, alpha, rslora=rslora, niter=niter, oversample=oversample, seed=seed)
        o.dropout = dropout
        o.qiter = qiter
        check(lib.pissa_model_add_adapters(self._h, byref(o)))
        name = ctypes.create_string_buffer(32)
        check(lib.pissa_init_name(byref(o.init), name, len(name)))
        self._peft = PeftConfig(r=rank, lora_alpha=o.init.alpha, use_rslora=rslora, lora_dropout=dropout,
                                target_modules=target_names(o.targets), init_lora_weights=name.value.decode(),
                                base_model_name_or_path=self.path)
        return self

    def load_adapter(self, path):
        """Attaches the PEFT adapter folder PATH, with PEFT's targeting, ranks and scales."""
        check(lib.pissa_model_load_adapter(self._h, cstr(path, "path")))
        self._peft = PeftConfig.load(path)
        return self

    def save_adapter(self, path, dtype="f32"):
        check(lib.pissa_model_save_adapter(self._h, cstr(path, "path"), dtype_code(dtype)))

    def peft_config(self, **overrides):
        """The PEFT config of the attached adapters (as add_adapters or the loaded folder set it), with OVERRIDES."""
        if self._peft is None:
            raise ValueError("the model has no adapters")
        c = self._peft.copy()
        for k, v in overrides.items():
            setattr(c, k, v)
        return c

    def to_peft(self, config=None):
        """A snapshot of the adapters as a PeftAdapter (copies of A and B), with CONFIG or peft_config()."""
        a = PeftAdapter(config if config is not None else self.peft_config())
        for v in self.adapters:
            a.add(v.module, v.A, v.B)
        return a

    @property
    def adapter_count(self):
        return lib.pissa_model_adapter_count(self._h)

    def adapter(self, key):
        """The adapter at index KEY or of module KEY ("model.layers.0.self_attn.q_proj")."""
        if isinstance(key, str):
            i = c_size_t()
            check(lib.pissa_model_adapter_find(self._h, key.encode(), byref(i)))
            key = i.value
        v = _AdapterViewStruct()
        check(lib.pissa_model_adapter(self._h, key, byref(v)))
        out = AdapterView()
        out.module, out.r, out.in_features, out.out_features, out.scale = (v.module.decode(), v.r, v.in_, v.out,
                                                                          v.scale)
        out.A = _core.view(v.A, (v.r, v.in_), self._state)
        out.B = _core.view(v.B, (v.out, v.r), self._state)
        out.dA = _core.view(v.dA, (v.r, v.in_), self._state)
        out.dB = _core.view(v.dB, (v.out, v.r), self._state)
        return out

    @property
    def adapters(self):
        return [self.adapter(i) for i in range(self.adapter_count)]

    # ---- full fine-tuning and parameters ----

    def set_full_finetune(self):
        """Makes every base weight trainable (no adapters allowed)."""
        check(lib.pissa_model_set_full_finetune(self._h))
        return self

    @property
    def full_finetune(self):
        return bool(lib.pissa_model_full_finetune(self._h))

    def parameters(self):
        """[(name, data, grad)] of every trainable tensor, arrays viewing the model's memory."""
        out = []
        for i in range(lib.pissa_model_param_count(self._h)):
            p = ParamView()
            check(lib.pissa_model_param(self._h, i, byref(p)))
            shape = (p.cols,) if p.ndim == 1 else (p.rows, p.cols)
            out.append((p.name.decode(), _core.view(p.data, shape, self._state), _core.view(p.grad, shape,
                                                                                           self._state)))
        return out

    def save(self, path, dtype="f32"):
        """Writes the base weights (the residuals, with PiSSA adapters) as a Hugging Face folder."""
        check(lib.pissa_model_save(self._h, cstr(path, "path"), dtype_code(dtype)))

    # ---- forward and backward ----

    def logits(self, ids):
        """Next-token logits (B, T, V) of ids (B, T) (or (T,), one row)."""
        i, _, B, T = _ids_labels(ids, None)
        out, p = _core.new_output((B, T, self.vocab_size))
        check(lib.pissa_model_logits(self._h, i.ptr, B, T, p))
        return out

    def loss(self, ids, labels=None, *, return_count=False):
        """Mean cross-entropy of ids (B, T) against labels (default: ids; -100 ignored; position t predicts
        labels[t + 1]). With return_count, (loss, number of targets)."""
        i, lab, B, T = _ids_labels(ids, labels)
        return _loss_result(lib.pissa_model_loss, self._h, i.ptr, lab.ptr, B, T, return_count=return_count)

    def forward_backward(self, ids, labels=None, *, dloss=1.0, return_count=False):
        """Forward and backward: adds dloss * dLoss/dtheta into the gradients (dA, dB); returns the loss."""
        i, lab, B, T = _ids_labels(ids, labels)
        return _loss_result(lib.pissa_model_forward_backward, self._h, i.ptr, lab.ptr, B, T, dloss,
                            return_count=return_count)

    def zero_grad(self):
        lib.pissa_model_zero_grad(self._h)

    def set_training(self, training=True, seed=0):
        """Training mode draws dropout masks (seeded by SEED); evaluation mode (the default) uses none."""
        lib.pissa_model_set_training(self._h, 1 if training else 0, seed)

    @property
    def grad_checkpoint(self):
        """Activation checkpointing: each layer's input is kept and the layer recomputed in the backward pass (the
        same gradients, about one more forward per step, far less activation memory). Off by default; settable."""
        return bool(lib.pissa_model_grad_checkpoint(self._h))

    @grad_checkpoint.setter
    def grad_checkpoint(self, on):
        lib.pissa_model_set_grad_checkpoint(self._h, 1 if on else 0)

    @property
    def arena_bytes(self):
        """Bytes of the planned working memory plus parameter gradients (0 activations before the first call)."""
        return lib.pissa_model_arena_bytes(self._h)


class Dataset(_core.Handle):
    """Rows of token ids with labels (pissa_dataset): len(d), d[i] -> (input_ids, labels), total_tokens, max_len."""

    _kind = "Dataset"

    def __init__(self, _h):
        self._init_handle(_h, lib.pissa_dataset_free)

    @classmethod
    def load_jsonl(cls, path, vocab_size):
        """JSONL rows {"input_ids": [...], "labels": [...]} (labels optional; -100 ignored)."""
        h = c_void_p()
        check(lib.pissa_dataset_load_jsonl(cstr(path, "path"), vocab_size, byref(h)))
        return cls(h.value)

    @classmethod
    def load(cls, path, tokenizer=None, vocab_size=None, max_len=0, format="auto", completion_only_loss=True,
             assistant_only_loss=True, chat_template=None):
        """A data set in any of TRL's formats (docs/data.md): JSONL lines {"messages": [...]}, {"prompt",
        "completion"} (strings or lists of messages), {"text"}, {"input_ids", "labels"}, mixed freely; or plain text
        (FORMAT "text", or "auto" when the first line is not a JSON object), cut into rows of MAX_LEN tokens.
        TOKENIZER (a pissa.Tokenizer) encodes the rows that need it; VOCAB_SIZE (default: the tokenizer's) bounds the
        ids. JSONL rows longer than MAX_LEN (0: no limit) are cut, with one warning."""
        from .text import data_opts
        if vocab_size is None:
            if tokenizer is None:
                raise ValueError("Dataset.load: give vocab_size (the model's) or a tokenizer")
            vocab_size = tokenizer.vocab_size
        o, keep = data_opts(completion_only_loss, assistant_only_loss, chat_template, max_len, format)
        h = c_void_p()
        check(lib.pissa_dataset_load(cstr(path, "path"), tokenizer._h if tokenizer is not None else None, vocab_size,
                                     byref(o), byref(h)))
        del keep
        return cls(h.value)

    def pack(self, seq_len):
        """The rows packed into rows of at most SEQ_LEN tokens (TRL's best-fit-decreasing packing with
        position_ids; docs/data.md): a new Dataset whose rows the trainer runs without attention or loss crossing
        from one packed row into the next."""
        h = c_void_p()
        check(lib.pissa_dataset_pack(self._h, seq_len, byref(h)))
        return type(self)(h.value)

    @property
    def packed(self):
        return bool(lib.pissa_dataset_is_packed(self._h))

    def row(self, i):
        """Row I as a dict: input_ids, labels, and in a packed data set position_ids."""
        if i < 0:
            i += len(self)
        r = Row()
        check(lib.pissa_dataset_row(self._h, i, byref(r)))
        out = {"input_ids": _core.copy_out(r.input_ids, (r.len,), "i"),
               "labels": _core.copy_out(r.labels, (r.len,), "i")}
        if r.position_ids:
            out["position_ids"] = _core.copy_out(r.position_ids, (r.len,), "i")
        return out

    @classmethod
    def load_text(cls, path, tokenizer, seq_len):
        """A text file encoded once with TOKENIZER and cut into rows of SEQ_LEN tokens overlapping by one."""
        h = c_void_p()
        check(lib.pissa_dataset_load_text(cstr(path, "path"), tokenizer._h, seq_len, byref(h)))
        return cls(h.value)

    @classmethod
    def from_text(cls, text, tokenizer, seq_len):
        """The same for TEXT (str, encoded as UTF-8, or bytes)."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        h = c_void_p()
        check(lib.pissa_dataset_from_text(tokenizer._h, data, len(data), seq_len, byref(h)))
        return cls(h.value)

    @classmethod
    def from_rows(cls, rows, vocab_size):
        """Rows from Python: each a sequence of ids, an (ids, labels) pair, or a dict with "input_ids" and
        optionally "labels" (labels default to the ids). Copied into the library (pissa_dataset_from_rows), which
        checks them by the rules of a JSONL row."""
        ids, labels, offsets, any_labels = array.array("i"), array.array("i"), array.array("q", [0]), False
        for k, r in enumerate(rows):
            if isinstance(r, dict):
                x = _int_list(r["input_ids"], f"rows[{k}].input_ids")
                y = _int_list(r["labels"], f"rows[{k}].labels") if r.get("labels") is not None else None
            elif isinstance(r, tuple) and len(r) == 2:
                x, y = _int_list(r[0], f"rows[{k}][0]"), _int_list(r[1], f"rows[{k}][1]")
            else:
                x, y = _int_list(r, f"rows[{k}]"), None
            if y is not None and len(y) != len(x):
                raise ValueError(f"rows[{k}]: {len(y)} labels for {len(x)} input_ids")
            any_labels |= y is not None
            ids.extend(x)
            labels.extend(y if y is not None else x)
            offsets.append(len(ids))
        n = len(offsets) - 1
        h = c_void_p()
        check(lib.pissa_dataset_from_rows(_int_ptr(ids), _int_ptr(labels) if any_labels else None,
                                          _int_ptr(offsets, c_int64), n, vocab_size, byref(h)))
        return cls(h.value)

    def __len__(self):
        return lib.pissa_dataset_count(self._h)

    @property
    def total_tokens(self):
        return lib.pissa_dataset_total_tokens(self._h)

    @property
    def max_len(self):
        return lib.pissa_dataset_max_len(self._h)

    def __getitem__(self, i):
        if not isinstance(i, int):
            raise TypeError("Dataset index must be an int")
        if i < 0:
            i += len(self)
        r = Row()
        check(lib.pissa_dataset_row(self._h, i, byref(r)))
        return _core.copy_out(r.input_ids, (r.len,), "i"), _core.copy_out(r.labels, (r.len,), "i")


def _int_ptr(a, ctype=ctypes.c_int32):
    """A pointer to the items of array.array A (None when it is empty: the library reads nothing then)."""
    return ctypes.cast(a.buffer_info()[0], ctypes.POINTER(ctype)) if len(a) else None


def _int_list(x, name):
    x = x.tolist() if hasattr(x, "tolist") else list(x)
    for v in x:
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name}: token ids must be integers, got {type(v).__name__}")
    return x


StepInfo = collections.namedtuple("StepInfo", [f for f, _ in _StepInfoStruct._fields_])
StepInfo.__doc__ = "What one update did: step (1-based), loss, lr, grad_norm, tokens, epoch."

_OPTIM_FIELDS = ("lr", "weight_decay", "beta1", "beta2", "eps", "momentum", "dampening", "nesterov")


def train_opts(total_steps, **kw):
    """pissa_train_default_opts() with the keyword overrides of Trainer."""
    o = lib.pissa_train_default_opts()
    o.total_steps = total_steps
    for k, v in kw.items():
        if v is None:
            continue
        if k == "optimizer":
            o.optim.kind = parse_enum(lib.pissa_optim_kind_parse, v, "optimizer")
        elif k == "schedule":
            o.schedule = parse_enum(lib.pissa_schedule_parse, v, "schedule")
        elif k in _OPTIM_FIELDS:
            setattr(o.optim, k, v)
        elif k in ("warmup", "batch", "accum", "seq", "max_grad_norm", "seed"):
            setattr(o, k, v)
        elif k == "shuffle":
            o.shuffle = 1 if v else 0
        else:
            raise TypeError(f"Trainer: unknown option {k!r}")
    return o


class Trainer(_core.Handle):
    """Deterministic, resumable fine-tuning of a model's adapters (or of all its weights) on a Dataset
    (pissa_trainer). Options default to pissa_train_default_opts(): AdamW lr 1e-4, constant schedule, batch 8,
    clipping at 1.0. The trainer keeps its model and data set alive. With comm=pissa.Comm (under mpirun), every
    process trains the same model on a slice of each micro-batch (pissa_trainer_create_comm): create, step, train,
    evaluate and load_state are then collective; the saves write from the calling process only."""

    _kind = "Trainer"

    def __init__(self, model, data, total_steps, *, lr=None, optimizer=None, schedule=None, warmup=None,
                 batch=None, accum=None, seq=None, max_grad_norm=None, seed=None, shuffle=None, weight_decay=None,
                 beta1=None, beta2=None, eps=None, momentum=None, dampening=None, nesterov=None, comm=None):
        if not isinstance(model, Model) or not isinstance(data, Dataset):
            raise TypeError("Trainer(model: pissa.Model, data: pissa.Dataset, total_steps)")
        from .comm import Comm
        if comm is not None and not isinstance(comm, Comm):
            raise TypeError("Trainer(comm=...): a pissa.Comm")
        o = train_opts(total_steps, lr=lr, optimizer=optimizer, schedule=schedule, warmup=warmup, batch=batch,
                       accum=accum, seq=seq, max_grad_norm=max_grad_norm, seed=seed, shuffle=shuffle,
                       weight_decay=weight_decay, beta1=beta1, beta2=beta2, eps=eps, momentum=momentum,
                       dampening=dampening, nesterov=nesterov)
        h = c_void_p()
        c = comm._h if comm is not None else None
        check(lib.pissa_trainer_create_comm(model._h, data._h, byref(o), c, byref(h)))
        parents = (model, data) + ((comm,) if comm is not None else ())
        self._init_handle(h.value, lib.pissa_trainer_free, parents=parents)
        self.model, self.data, self.opts, self.total_steps, self.comm = model, data, o, total_steps, comm

    def step(self):
        """One update; returns its StepInfo."""
        s = _StepInfoStruct()
        check(lib.pissa_trainer_step(self._h, byref(s)))
        return StepInfo(**_struct_dict(s))

    @property
    def steps(self):
        """Updates done so far."""
        return lib.pissa_trainer_steps(self._h)

    def train(self, steps=None, callback=None):
        """Runs STEPS updates (default: up to total_steps). CALLBACK(info), if given, is called after each update;
        returning True stops early. Returns the list of StepInfo."""
        n = self.total_steps - self.steps if steps is None else steps
        out = []
        for _ in range(max(0, n)):
            info = self.step()
            out.append(info)
            if callback is not None and callback(info):
                break
        return out

    def evaluate(self, data=None, *, return_count=False):
        """Token-weighted mean loss over every target of DATA (default: the training set), without dropout."""
        d = self.data if data is None else data
        return _loss_result(lib.pissa_trainer_evaluate, self._h, d._h, return_count=return_count)

    def save(self, path):
        """The adapters as a PEFT folder (float32), or the whole model in full fine-tuning."""
        check(lib.pissa_trainer_save(self._h, cstr(path, "path")))

    def save_peft(self, path, config=None):
        """The adapters with an explicit PeftConfig (default: the model's peft_config())."""
        cfg = config if config is not None else self.model.peft_config()
        check(lib.pissa_trainer_save_peft(self._h, cfg._h, cstr(path, "path")))

    def save_state(self, path):
        check(lib.pissa_trainer_save_state(self._h, cstr(path, "path")))

    def load_state(self, path):
        check(lib.pissa_trainer_load_state(self._h, cstr(path, "path")))

