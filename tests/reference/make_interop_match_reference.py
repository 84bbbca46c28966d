#!/usr/bin/python3
"""Reference for test_interop's target-matching tests: which modules of a 4-layer Llama each adapter_config.json
targets, and with which r / lora_alpha / scale, decided by a transliteration of Hugging Face PEFT's own code run
with Python's `re` (so the C side's PCRE2 is checked against the real Python regex engine):

  peft/tuners/tuners_utils.py  check_target_module_exists, _maybe_include_all_linear_layers and the
                               target_modules condensation of BaseTuner.inject_adapter (_find_minimal_target_modules)
  peft/utils/other.py          get_pattern_key: re.match(rf"(.*\\.)?({key})$", module), first key in dict order
  peft/tuners/lora/model.py    _create_and_replace: r = rank_pattern.get(key, r), alpha likewise
  peft/tuners/lora/layer.py    update_layer: scaling = alpha / r, or alpha / sqrt(r) with use_rslora

PEFT itself is not installed in CI; this script and its output (interop_match_cases.json) are committed.
Run: /usr/bin/python3 tests/reference/make_interop_match_reference.py
"""
import json
import math
import os
import re

L = 4
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def llama_named_modules(n_layers):
    """LlamaForCausalLM.named_modules() names (without the root ""), and which are nn.Linear."""
    names, linear = ["model", "model.embed_tokens", "model.layers"], set()
    for l in range(n_layers):
        p = f"model.layers.{l}"
        names += [p, f"{p}.self_attn"]
        for j in PROJ[:4]:
            names.append(f"{p}.self_attn.{j}")
            linear.add(names[-1])
        names.append(f"{p}.mlp")
        for j in PROJ[4:]:
            names.append(f"{p}.mlp.{j}")
            linear.add(names[-1])
        names += [f"{p}.mlp.act_fn", f"{p}.input_layernorm", f"{p}.post_attention_layernorm"]
    names += ["model.norm", "model.rotary_emb", "lm_head"]
    linear.add("lm_head")
    return names, linear


def find_minimal_target_modules(target_modules, other_module_names):
    target_modules = set(target_modules)
    other_module_names = set(other_module_names)

    def generate_suffixes(s):
        parts = s.split(".")
        return [".".join(parts[i:]) for i in range(len(parts))][::-1]

    other_module_suffixes = {suffix for item in other_module_names for suffix in generate_suffixes(item)}
    target_modules_suffix_map = {item: generate_suffixes(item) for item in target_modules}
    required_suffixes = set()
    for item, suffixes in sorted(target_modules_suffix_map.items(), key=lambda tup: tup[1]):
        for suffix in suffixes:
            if suffix in required_suffixes or suffix in other_module_suffixes:
                continue
            if not any(item.endswith("." + req_suffix) for req_suffix in required_suffixes):
                required_suffixes.add(suffix)
                break
    if not required_suffixes:
        return set(target_modules)
    return required_suffixes


def prepare_targets(cfg, names, linear):
    """target_modules as BaseTuner.inject_adapter leaves it before matching."""
    tm = cfg.get("target_modules")
    if tm is None:
        tm = ["q_proj", "v_proj"]  # TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING["llama"]
    if isinstance(tm, str) and tm.lower() == "all-linear":
        tm = linear - {"lm_head"}  # the output embeddings are excluded
    if isinstance(tm, (list, set)) and len(tm) >= 20:  # MIN_TARGET_MODULES_FOR_OPTIMIZATION
        suffixes = tuple("." + s for s in tm)
        names_no_target = [n for n in names if n not in tm and not n.endswith(suffixes)]
        new = find_minimal_target_modules(tm, names_no_target)
        if len(new) < len(tm):
            tm = new
    return tm


def check_target_module_exists(tm, cfg, key):
    if isinstance(tm, str):
        return bool(re.fullmatch(tm, key))
    if key in tm:
        return True
    found = any(key.endswith(f".{t}") for t in tm)
    layer_indexes = cfg.get("layers_to_transform")
    using = layer_indexes is not None and (len(layer_indexes) != 0 if isinstance(layer_indexes, list) else True)
    if using and found:
        m = re.match(r".*\.[^.]*\.(\d+)\.", key)  # layers_pattern None
        if m is None:
            return False
        idx = int(m.group(1))
        return idx == layer_indexes if isinstance(layer_indexes, int) else idx in layer_indexes
    return found


def get_pattern_key(pattern_keys, key_to_match):
    for key in pattern_keys:
        if re.match(rf"(.*\.)?({key})$", key_to_match):
            return key
    return key_to_match


def base(**kw):
    cfg = {"peft_type": "LORA", "r": 8, "lora_alpha": 16}
    cfg.update(kw)
    return cfg


CONFIGS = [
    base(target_modules=["q_proj", "v_proj"]),
    base(target_modules=None),
    base(target_modules=["o_proj", "model.layers.1.mlp.down_proj", "self_attn.k_proj"], layers_to_transform=[0, 2]),
    base(target_modules=["gate_proj"], layers_to_transform=3),
    base(target_modules=["proj", "_proj", "mlp"]),  # suffixes match whole components only
    base(target_modules=r".*\.(q|k)_proj"),
    base(target_modules=r"model\.layers\.\d+\.self_attn\.(?:q|v)_proj", layers_to_transform=[0]),
    base(target_modules=r".*layers\.[13]\..*(?<!o)_proj"),
    base(target_modules=r"(?P<blk>model\.layers\.(0|2))\.mlp\.\w+_proj|lm_head"),
    base(target_modules="q_proj"),  # a string is a regex: fullmatch, so no module matches
    base(target_modules="all-linear"),
    base(target_modules="ALL-Linear", layers_to_transform=[1, 3]),
    base(target_modules="all-linear", use_rslora=True, r=16, lora_alpha=8,
         rank_pattern={"q_proj": 4, "model.layers.2.self_attn.v_proj": 2, r"layers\.3\..*": 6, "proj": 99},
         alpha_pattern={"v_proj": 32, r"mlp\.(up|down)_proj": 3, "self_attn.q_proj": 5}),
    base(target_modules=["q_proj", "k_proj", "v_proj"],
         rank_pattern={r"layers\.3\..*": 6, "q_proj": 4},  # order decides: layer 3's q_proj gets 6
         alpha_pattern={"k_proj": 1.5}),
]


def main():
    names, linear = llama_named_modules(L)
    cases = []
    for cfg in CONFIGS:
        tm = prepare_targets(cfg, names, linear)
        rp, ap = cfg.get("rank_pattern", {}), cfg.get("alpha_pattern", {})
        rows = []
        for key in names:
            targeted = check_target_module_exists(tm, cfg, key)
            r = rp.get(get_pattern_key(rp.keys(), key), cfg["r"])
            alpha = ap.get(get_pattern_key(ap.keys(), key), cfg["lora_alpha"])
            scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
            rows.append([key, int(targeted), r, alpha, scale])
        cases.append({"config": json.dumps(cfg), "modules [name, targeted, r, alpha, scale]": rows})
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "interop_match_cases.json")
    with open(out, "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(c) for c in cases) + "\n]\n")
    n = sum(len(c["modules [name, targeted, r, alpha, scale]"]) for c in cases)
    print(f"wrote {out}: {len(cases)} configs, {n} module decisions")


if __name__ == "__main__":
    main()
