"""Writes peft_config_pissa_init.json: the adapter_config.json text PEFT's LoraConfig.save_pretrained produces
(json.dumps(output_dict, indent=2, sort_keys=True), no trailing newline) for the initial adapter of a typical
PiSSA run: r 16, lora_alpha 16, target q_proj and v_proj, saved with init_lora_weights True (pissa_init/).

The dict holds the fields PEFT 0.13 writes for a LoraConfig, plus "peft_version" (written by newer PEFT; we
record the 0.13.0 layout we follow). lora_dropout is PEFT's float default 0.0, which Python writes as "0.0".

Run with /usr/bin/python3 (standard library only): python3 make_peft_config_reference.py
"""
import json
import os

config = {
    "alpha_pattern": {},
    "auto_mapping": None,
    "base_model_name_or_path": "stories260K",
    "bias": "none",
    "fan_in_fan_out": False,
    "inference_mode": True,
    "init_lora_weights": True,
    "layer_replication": None,
    "layers_pattern": None,
    "layers_to_transform": None,
    "loftq_config": {},
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "megatron_config": None,
    "megatron_core": "megatron.core",
    "modules_to_save": None,
    "peft_type": "LORA",
    "peft_version": "0.13.0",
    "r": 16,
    "rank_pattern": {},
    "revision": None,
    "target_modules": ["q_proj", "v_proj"],
    "task_type": "CAUSAL_LM",
    "use_dora": False,
    "use_rslora": False,
}

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "peft_config_pissa_init.json"), "w") as f:
    f.write(json.dumps(config, indent=2, sort_keys=True))
