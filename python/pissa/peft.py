"""Hugging Face PEFT adapters: config, folders, PiSSA -> LoRA conversion, merging into a checkpoint."""
import ctypes
import json
import os
from ctypes import byref, c_char_p, c_void_p

from . import _core
from ._lib import check, cstr, dtype_code, lib

class PeftConfig(_core.Handle):
    """adapter_config.json as libpissa keeps it (pissa_peft_config, opaque): fields are read and set by their PEFT
    names, with Python values as json gives them: r, lora_alpha, lora_dropout, use_rslora, use_dora,
    fan_in_fan_out, bias, init_lora_weights (True, False, "pissa", "pissa_niter_4", ...), task_type,
    base_model_name_or_path, target_modules (a list of names, a regex str, or "all-linear"), rank_pattern and
    alpha_pattern (dicts), layers_to_transform (a list or None), modules_to_save. PeftConfig(**fields) starts from
    PEFT's LoraConfig for a causal LM (pissa_peft_config_create)."""

    _kind = "PeftConfig"

    def __init__(self, **fields):
        h = c_void_p()
        check(lib.pissa_peft_config_create(byref(h)))
        self._init_handle(h.value, lib.pissa_peft_config_free)
        for k, v in fields.items():
            setattr(self, k, v)

    @classmethod
    def _wrap(cls, h):
        self = cls.__new__(cls)
        self._init_handle(h, lib.pissa_peft_config_free)
        return self

    @classmethod
    def _copy_of(cls, h):
        out = c_void_p()
        check(lib.pissa_peft_config_clone(h, byref(out)))
        return cls._wrap(out.value)

    @classmethod
    def from_json(cls, text, source="adapter_config.json"):
        data = text.encode() if isinstance(text, str) else bytes(text)
        h = c_void_p()
        check(lib.pissa_peft_config_parse(data, len(data), cstr(source), byref(h)))
        return cls._wrap(h.value)

    @classmethod
    def load(cls, path):
        """Reads PATH (an adapter folder or its adapter_config.json)."""
        p = os.fspath(path)
        if os.path.isdir(p):
            p = os.path.join(p, "adapter_config.json")
        with open(p, "rb") as f:
            return cls.from_json(f.read(), p)

    def to_json(self):
        out = c_void_p()
        check(lib.pissa_peft_config_to_json(self._h, byref(out)))
        try:
            return ctypes.string_at(out).decode()
        finally:
            lib.pissa_free(out)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        out = c_void_p()
        if lib.pissa_peft_config_get(self._h, cstr(name), byref(out)) != 0:
            raise AttributeError(f"PeftConfig has no field {name!r}")
        try:
            v = json.loads(ctypes.string_at(out).decode())
        finally:
            lib.pissa_free(out)
        if name == "init_lora_weights" and isinstance(v, bool):
            return "true" if v else "false"  # the spelling pissa_init_parse and the CLI use
        return v

    def __setattr__(self, name, v):
        if name.startswith("_"):
            object.__setattr__(self, name, v)
            return
        if name == "init_lora_weights" and v in ("true", "false"):
            v = v == "true"
        if name == "target_modules" and not isinstance(v, str):
            v = list(v)
        check(lib.pissa_peft_config_set(self._h, cstr(name), cstr(json.dumps(v, ensure_ascii=False))))

    def copy(self):
        return PeftConfig._copy_of(self._h)

    def __repr__(self):
        return (f"PeftConfig(r={self.r}, lora_alpha={self.lora_alpha}, target_modules={self.target_modules!r}, "
                f"init_lora_weights={self.init_lora_weights!r}, use_rslora={self.use_rslora})")


class PeftAdapter(_core.Handle):
    """A PEFT adapter in memory (pissa_peft_adapter): load(dir), save(dir), modules, module(name) -> (A, B)."""

    _kind = "PeftAdapter"

    def __init__(self, config=None):
        cfg = config if config is not None else PeftConfig()
        h = c_void_p()
        check(lib.pissa_peft_adapter_create(cfg._h, byref(h)))
        self._init_handle(h.value, lib.pissa_peft_adapter_free)

    @classmethod
    def _wrap(cls, h):
        self = cls.__new__(cls)
        self._init_handle(h, lib.pissa_peft_adapter_free)
        return self

    @classmethod
    def load(cls, path):
        """Reads a PEFT adapter folder (F32, F16 or BF16 tensors)."""
        h = c_void_p()
        check(lib.pissa_peft_adapter_load(cstr(path, "path"), byref(h)))
        return cls._wrap(h.value)

    @property
    def config(self):
        """A copy of the adapter's config."""
        return PeftConfig._copy_of(lib.pissa_peft_adapter_config(self._h))

    def add(self, module, A, B):
        """Adds MODULE ("model.layers.0.self_attn.q_proj") with A (r, in) and B (out, r), copied."""
        a = _core.as_input(A, "A", "f", (2,))
        b = _core.as_input(B, "B", "f", (2,))
        r, inn = a.shape
        out, rb = b.shape
        if rb != r:
            raise ValueError(f"{module}: A is {a.shape} but B is {b.shape}: B must be (out, {r})")
        check(lib.pissa_peft_adapter_add(self._h, cstr(module, "module"), r, inn, out, a.ptr, b.ptr))

    def __len__(self):
        return lib.pissa_peft_adapter_count(self._h)

    @property
    def modules(self):
        return [self._module(i)[0] for i in range(len(self))]

    def _module(self, i):
        name, A, B = c_char_p(), c_void_p(), c_void_p()
        check(lib.pissa_peft_adapter_module(self._h, i, byref(name), byref(A), byref(B)))
        return name.value.decode(), A.value, B.value

    def module(self, key):
        """(A, B) of module KEY (a name or an index), viewing the adapter's memory (they keep it alive)."""
        if isinstance(key, str):
            names = self.modules
            if key not in names:
                raise KeyError(key)
            key = names.index(key)
        _, A, B = self._module(key)
        return tuple(_core.view(lib.pissa_tensor_data(t), (lib.pissa_tensor_dim(t, 0), lib.pissa_tensor_dim(t, 1)),
                                self._state) for t in (A, B))

    def save(self, path, dtype="f32"):
        """Writes PATH/adapter_model.safetensors and PATH/adapter_config.json (created; atomic)."""
        check(lib.pissa_peft_adapter_save(self._h, cstr(path, "path"), dtype_code(dtype)))

    def to_lora(self, initial, base_model=None):
        """This trained PiSSA adapter as a rank-2r LoRA adapter for the ORIGINAL base (docs/interop.md)."""
        return pissa_to_lora(self, initial, base_model)


def _adapter(a):
    """A PeftAdapter, or one loaded from the folder A (None stays None)."""
    return a if a is None or isinstance(a, PeftAdapter) else PeftAdapter.load(a)


def pissa_to_lora(trained, initial, base_model=None):
    """PiSSA -> LoRA: from the TRAINED adapter and the INITIAL one (PeftAdapter objects or folders) builds the
    LoRA adapter A' = [A; A0], B' = [B, -B0] for the original base, returned as a new PeftAdapter."""
    t = _adapter(trained)
    i = _adapter(initial)
    out = c_void_p()
    check(lib.pissa_peft_pissa_to_lora(t._h, i._h, cstr(base_model) if base_model is not None else None, byref(out)))
    return PeftAdapter._wrap(out.value)


def _dtype_or_keep(dtype):
    return -1 if dtype is None else dtype_code(dtype)


def merge_checkpoint(base_dir, adapter, out_dir, *, unmerge=False, dtype=None):
    """Writes OUT_DIR (config.json + model.safetensors): the Hugging Face checkpoint BASE_DIR with ADAPTER (a
    PeftAdapter or a folder) merged, W + s*B*A (or unmerged, W - s*B*A). dtype None keeps each tensor's."""
    a = _adapter(adapter)
    ck = c_void_p()
    check(lib.pissa_checkpoint_open(cstr(base_dir, "base_dir"), byref(ck)))
    try:
        check(lib.pissa_peft_merge_checkpoint(ck, a._h, 1 if unmerge else 0, _dtype_or_keep(dtype),
                                              cstr(out_dir, "out_dir")))
    finally:
        lib.pissa_checkpoint_free(ck)


def export_hf(llama2c_path, out_dir, adapter=None, *, unmerge=False, dtype=None):
    """Exports a llama2.c checkpoint as a Hugging Face folder, optionally merging ADAPTER (PeftAdapter or folder)."""
    a = _adapter(adapter)
    check(lib.pissa_llama2c_export_hf(cstr(llama2c_path, "path"), a._h if a is not None else None,
                                      1 if unmerge else 0, _dtype_or_keep(dtype), cstr(out_dir, "out_dir")))

