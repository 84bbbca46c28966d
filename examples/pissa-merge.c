/* pissa-merge: merges a PEFT LoRA adapter into its base, W' = W + s·B·A, and writes a full Hugging Face
 * checkpoint (config.json + model.safetensors with the base's tensor names) that plain transformers loads.
 * --unmerge subtracts instead; --to-hf exports a llama2.c .bin to the Hugging Face layout (with or without an
 * adapter). The weights are streamed one tensor at a time. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char *usage =
    "usage: pissa-merge --model PATH --adapter DIR --out DIR [options]\n"
    "       pissa-merge --model MODEL.bin --to-hf --out DIR [--adapter DIR] [options]\n"
    "Writes OUT/config.json and OUT/model.safetensors: the base checkpoint with the adapter merged into every\n"
    "weight it adapts (W + s*B*A), under the base's tensor names.\n"
    "\n"
    "  --model PATH       Hugging Face checkpoint folder (config.json + model.safetensors or a sharded index),\n"
    "                     or with --to-hf a llama2.c checkpoint (.bin, version 0 or 1)\n"
    "  --adapter DIR      PEFT LoRA adapter (adapter_model.safetensors + adapter_config.json); optional\n"
    "                     with --to-hf\n"
    "  --out DIR          output folder (created; must differ from --model)\n"
    "  --dtype T          f32, bf16 or f16 for every float tensor (default: each tensor's own dtype;\n"
    "                     f32 for a llama2.c model)\n"
    "  --unmerge          subtract the adapter instead (W - s*B*A)\n"
    "  --to-hf            --model is a llama2.c checkpoint: export it with Hugging Face names and the q/k\n"
    "                     rows permuted to Hugging Face's RoPE convention\n"
    "  -h, --help         this text\n";

int main(int argc, char **argv) {
    cli_prog = "pissa-merge";
    pissa_set_log_callback(cli_log_to_stderr, NULL);
    const char *model = NULL, *adapter_dir = NULL, *out_dir = NULL;
    int dtype = -1, unmerge = 0, to_hf = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--model")) model = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--adapter")) adapter_dir = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--out")) out_dir = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--unmerge")) unmerge = 1;
        else if (!strcmp(a, "--to-hf")) to_hf = 1;
        else if (!strcmp(a, "--dtype")) {
            pissa_dtype dt;
            if (pissa_dtype_parse(cli_value(argc, argv, &i), &dt) != PISSA_OK || !pissa_dtype_is_float(dt))
                cli_usage_error("--dtype: '%s' is not f32, bf16 or f16", argv[i]);
            dtype = (int)dt;
        } else cli_usage_error("unknown option '%s'", a);
    }
    if (!model) cli_usage_error("--model PATH is required");
    if (!out_dir) cli_usage_error("--out DIR is required");
    if (!adapter_dir && !to_hf) cli_usage_error("--adapter DIR is required (or --to-hf to export a llama2.c model)");
    if (unmerge && !adapter_dir) cli_usage_error("--unmerge needs --adapter DIR");
    struct stat sb;
    if (stat(model, &sb) != 0) cli_fail("--model: cannot open '%s'", model);
    int is_dir = S_ISDIR(sb.st_mode);
    if (to_hf && is_dir) cli_usage_error("--to-hf: '%s' is a folder; it expects a llama2.c .bin file", model);
    if (!to_hf && !is_dir)
        cli_usage_error("--model: '%s' is a file; add --to-hf to export a llama2.c checkpoint", model);
    cli_check_output("--out", out_dir, "--model", model);
    cli_check_output("--out", out_dir, "--adapter", adapter_dir);

    double t0 = cli_now();
    pissa_peft_adapter *ad = NULL;
    if (adapter_dir) cli_check(pissa_peft_adapter_load(adapter_dir, &ad), "--adapter");
    static const char *const mine[] = {CLI_CHECKPOINT_FILES, NULL};
    const char *dst = cli_out_begin(out_dir, mine);
    size_t n_tensors = 0;
    if (to_hf) {
        cli_check(pissa_llama2c_export_hf(model, ad, unmerge, dtype, dst), model);
    } else {
        pissa_checkpoint *ckpt;
        cli_check(pissa_checkpoint_open(model, &ckpt), "--model");
        cli_check(pissa_peft_merge_checkpoint(ckpt, ad, unmerge, dtype, dst), out_dir);
        n_tensors = pissa_checkpoint_count(ckpt);
        pissa_checkpoint_free(ckpt);
        cli_copy_companions(model, dst);
    }
    cli_out_commit();
    if (ad) {
        const pissa_peft_config *c = pissa_peft_adapter_config(ad);
        printf("pissa-merge: %s %zu adapted weights (r %lld, lora_alpha %g%s) %s %s",
               unmerge ? "unmerged" : "merged", pissa_peft_adapter_count(ad), (long long)pissa_peft_config_r(c),
               pissa_peft_config_lora_alpha(c), pissa_peft_config_use_rslora(c) ? ", rsLoRA" : "",
               unmerge ? "from" : "into", model);
    } else {
        printf("pissa-merge: exported %s", model);
    }
    if (n_tensors) printf(" (%zu tensors)", n_tensors);
    printf("; wrote %s/model.safetensors and %s/config.json in %.2f s\n", out_dir, out_dir, cli_now() - t0);
    pissa_peft_adapter_free(ad);
    return 0;
}
