"""Every model family through the binding: the tiny fixtures of tests/reference/make_llama_reference.py (PyTorch
float64 references written from transformers' modeling files) give PyTorch's logits and loss from Python."""
import json
import os
import struct

import numpy as np
import pytest

import pissa

REF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "reference")
FAMILIES = ["llama3_rope", "llama_bias_linear", "mistral_window", "qwen2_bias", "qwen3_qknorm"]


def _read_f32(path, name):
    """Tensor NAME of a safetensors file, as numpy float32."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        info = header[name]
        b, e = info["data_offsets"]
        f.seek(8 + n + b)
        return np.frombuffer(f.read(e - b), dtype=np.float32).reshape(info["shape"])


@pytest.mark.parametrize("fixture", FAMILIES)
def test_each_family_gives_pytorch_logits_and_loss(fixture):
    d = os.path.join(REF, fixture)
    with open(os.path.join(d, "batch.json")) as f:
        batch = json.load(f)
    with open(os.path.join(d, "expected.json")) as f:
        expected = json.load(f)
    ids = np.array(batch["input_ids"], dtype=np.int32)
    labels = np.array(batch["labels"], dtype=np.int32)
    with pissa.Model.load(d) as m:
        m.load_adapter(os.path.join(d, "adapter"))
        assert m.config.model_type == json.load(open(os.path.join(d, "config.json")))["model_type"]
        want = _read_f32(os.path.join(d, "expected.safetensors"), "logits")
        got = m.logits(ids)
        np.testing.assert_array_less(np.abs(got - want), 1e-5 * np.abs(want).max())
        loss, count = m.loss(ids, labels, return_count=True)
        assert count == expected["count"]
        assert abs(loss - expected["loss"]) <= 1e-5 * expected["loss"]
