/* pissa-convert: a trained PiSSA adapter → an ordinary LoRA adapter for the ORIGINAL base model, as PEFT's
 * save_pretrained(path_initial_model_for_weight_conversion=...) does it (docs/interop.md): rank 2r,
 * A' = [A; A0], B' = [B, −B0], alpha doubled (√2× with rsLoRA), init_lora_weights true. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *usage =
    "usage: pissa-convert --adapter DIR --initial DIR --out DIR [options]\n"
    "Converts a PiSSA adapter trained on the residual model into a LoRA adapter of rank 2r for the original\n"
    "base model: base + converted adapter = residual + PiSSA adapter.\n"
    "\n"
    "  --adapter DIR      the trained PiSSA adapter (adapter_model.safetensors + adapter_config.json)\n"
    "  --initial DIR      the adapter training started from (pissa-init's OUT/pissa_init)\n"
    "  --out DIR          output folder for the LoRA adapter (created)\n"
    "  --base NAME        base_model_name_or_path of the output (default: the trained adapter's)\n"
    "  --dtype T          f32, bf16 or f16 (default: the trained adapter's)\n"
    "  -h, --help         this text\n";

/* dtype of the first tensor of DIR/adapter_model.safetensors. */
static pissa_dtype stored_dtype(const char *dir) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    pissa_st_file *f;
    cli_check(pissa_st_open(path, &f), path);
    pissa_st_info info;
    pissa_dtype dt = PISSA_F32;
    if (pissa_st_count(f) && pissa_st_info_at(f, 0, &info) == PISSA_OK && pissa_dtype_is_float(info.dtype))
        dt = info.dtype;
    pissa_st_close(f);
    return dt;
}

int main(int argc, char **argv) {
    cli_prog = "pissa-convert";
    pissa_set_log_callback(cli_log_to_stderr, NULL);
    const char *adapter_dir = NULL, *initial_dir = NULL, *out_dir = NULL, *base = NULL;
    int have_dtype = 0;
    pissa_dtype dtype = PISSA_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--adapter")) adapter_dir = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--initial")) initial_dir = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--out")) out_dir = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--base")) base = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--dtype")) {
            if (pissa_dtype_parse(cli_value(argc, argv, &i), &dtype) != PISSA_OK || !pissa_dtype_is_float(dtype))
                cli_usage_error("--dtype: '%s' is not f32, bf16 or f16", argv[i]);
            have_dtype = 1;
        } else cli_usage_error("unknown option '%s'", a);
    }
    if (!adapter_dir) cli_usage_error("--adapter DIR is required");
    if (!initial_dir) cli_usage_error("--initial DIR is required");
    if (!out_dir) cli_usage_error("--out DIR is required");
    cli_check_output("--out", out_dir, "--adapter", adapter_dir);
    cli_check_output("--out", out_dir, "--initial", initial_dir);

    pissa_peft_adapter *trained, *initial, *lora;
    cli_check(pissa_peft_adapter_load(adapter_dir, &trained), "--adapter");
    cli_check(pissa_peft_adapter_load(initial_dir, &initial), "--initial");
    if (!have_dtype) dtype = stored_dtype(adapter_dir);
    cli_check(pissa_peft_pissa_to_lora(trained, initial, base, &lora), "convert");
    cli_check(pissa_peft_adapter_save(lora, out_dir, dtype), out_dir); /* replaces the folder's adapter whole */

    const pissa_peft_config *c = pissa_peft_adapter_config(trained), *o = pissa_peft_adapter_config(lora);
    int64_t r = pissa_peft_config_r(c), r2 = pissa_peft_config_r(o);
    double alpha = pissa_peft_config_lora_alpha(c), alpha2 = pissa_peft_config_lora_alpha(o);
    printf("pissa-convert: %zu modules, rank %lld -> %lld, lora_alpha %g -> %g%s, scale %g kept; wrote %s (%s)\n",
           pissa_peft_adapter_count(lora), (long long)r, (long long)r2, alpha, alpha2,
           pissa_peft_config_use_rslora(c) ? " (rsLoRA)" : "", pissa_lora_scale(alpha2, r2, pissa_peft_config_use_rslora(o)),
           out_dir,
           pissa_dtype_name(dtype));
    pissa_peft_adapter_free(trained);
    pissa_peft_adapter_free(initial);
    pissa_peft_adapter_free(lora);
    return 0;
}
