"""libpissa from Python: PiSSA and LoRA fine-tuning of Llama checkpoints, interoperable with Hugging Face PEFT.

A ctypes binding of the C library (no compiled extension). See docs/python.md. Arrays: numpy in and out without
copies when numpy is importable, else the standard library (lists, array.array, bytes, memoryview in; pissa.Array
out). Library failures raise pissa.Error subclasses carrying the library's message.
"""
from ._lib import (Error, FileError, FormatError, InvalidArgumentError, NotFoundError, NumericError,
                   OutOfMemoryError, ShapeError, UnsupportedError, __version__, library_path)
from ._lib import lib as _clib
from ._core import Array, numpy_available
from .comm import Comm, mpi_available
from .linalg import adapter_init, lora_scale, singular_values, svd_exact, svd_randomized
from .model import AdapterView, Config, Dataset, Model, StepInfo, Trainer
from .peft import PeftAdapter, PeftConfig, export_hf, merge_checkpoint, pissa_to_lora
from .text import Generator, RowEncoder, Tokenizer, TokenStream

IGNORE_INDEX = -100


def library_version():
    """The loaded library's version string ("0.2.0")."""
    return _clib.pissa_version_string().decode()


def set_num_threads(n):
    """BLAS threads (n <= 0: the default)."""
    _clib.pissa_set_num_threads(n)


def get_num_threads():
    return _clib.pissa_get_num_threads()


__all__ = ["Error", "FileError", "FormatError", "InvalidArgumentError", "NotFoundError", "NumericError",
           "OutOfMemoryError", "ShapeError", "UnsupportedError", "__version__", "library_path", "library_version",
           "Array", "numpy_available", "adapter_init", "lora_scale", "singular_values", "svd_exact",
           "svd_randomized", "AdapterView", "Config", "Dataset", "Model", "StepInfo", "Trainer", "PeftAdapter",
           "PeftConfig", "export_hf", "merge_checkpoint", "pissa_to_lora", "Generator", "RowEncoder", "Tokenizer", "TokenStream",
           "IGNORE_INDEX", "set_num_threads", "get_num_threads", "Comm", "mpi_available"]
