/* pissa-eval: loss and perplexity of a Llama model (optionally with a PEFT adapter) on a data set: JSONL in any of
 * TRL's formats (docs/data.md: the targets pissa-finetune trains on) or plain text cut into --seq tokens. The loss is the mean cross-entropy over every non-ignored target
 * of the whole data set (not a mean of batch means). Results go to stdout; progress to stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *usage =
    "usage: pissa-eval --model PATH --data FILE [options]\n"
    "Mean cross-entropy (Hugging Face causal-LM convention) and perplexity of a model on a data set.\n"
    "\n"
    "  --model PATH       Hugging Face folder (config.json + safetensors) or llama2.c checkpoint (.bin)\n"
    "  --adapter DIR      PEFT LoRA/PiSSA adapter folder (adapter_config.json + adapter_model.safetensors)\n"
    "  --data FILE        JSONL in any of TRL's formats ({\"messages\"}, {\"prompt\", \"completion\"}, {\"text\"},\n"
    "                     {\"input_ids\", \"labels\"}: the loss on the targets pissa-finetune trains on), or plain\n"
    "                     text, encoded once (with the tokenizer's special tokens) and cut into rows of --seq tokens\n"
    "  --tokenizer T      llama2.c tokenizer.bin, tokenizer.json, or a folder holding tokenizer.json (default: the\n"
    "                     --model folder's tokenizer.json, when it has one)\n"
    "  --data-format F    auto (JSONL when the first line is a JSON object, else text), jsonl or text\n"
    "  --chat-template F  a Jinja chat template instead of the tokenizer's\n"
    "  --all-tokens       every token of a row is a target (TRL's assistant_only_loss and completion_only_loss off)\n"
    "  --seq T            tokens per text row (default 256); longer JSONL rows are cut to T (default: not cut)\n"
    "  --batch B          rows per forward pass (default 8)\n"
    CLI_BASE_DTYPE_HELP
    "  --threads N        BLAS threads (default: OPENBLAS_NUM_THREADS or all cores)\n"
    "  --json             print exactly one line {\"loss\": ..., \"ppl\": ..., \"tokens\": ...} on stdout\n"
    "  -q, --quiet        no progress on stderr\n"
    "  -h, --help         this text\n";

int main(int argc, char **argv) {
    cli_prog = "pissa-eval";
    pissa_set_log_callback(cli_log_to_stderr, NULL);
    const char *model_path = NULL, *adapter_dir = NULL, *data_path = NULL, *tok_path = NULL;
    int64_t seq = 0, batch = 8;
    pissa_data_opts o = pissa_data_default_opts();
    const char *template_path = NULL;
    int threads = 0, json = 0, quiet = 0;
    pissa_model_opts mo = pissa_model_default_opts();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--model")) model_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--adapter")) adapter_dir = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--data")) data_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--tokenizer")) tok_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--seq")) seq = cli_int(a, cli_value(argc, argv, &i), 2, 1 << 20);
        else if (!strcmp(a, "--data-format")) {
            if (pissa_data_format_parse(cli_value(argc, argv, &i), &o.format) != PISSA_OK)
                cli_usage_error("--data-format: %s", pissa_last_error());
        } else if (!strcmp(a, "--chat-template")) template_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--all-tokens")) o.assistant_only_loss = o.completion_only_loss = 0;
        else if (!strcmp(a, "--batch")) batch = cli_int(a, cli_value(argc, argv, &i), 1, 1 << 16);
        else if (!strcmp(a, "--base-dtype")) mo.base_dtype = cli_qtype(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--threads")) threads = (int)cli_int(a, cli_value(argc, argv, &i), 1, 1024);
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) quiet = 1;
        else cli_usage_error("unknown option '%s'", a);
    }
    if (!model_path) cli_usage_error("--model PATH is required");
    if (!data_path) cli_usage_error("--data FILE is required");
    if (threads) pissa_set_num_threads(threads);

    double t0 = cli_now();
    pissa_model *m;
    cli_check(pissa_model_load_with_opts(model_path, &mo, &m), model_path);
    if (adapter_dir) cli_check(pissa_model_load_adapter(m, adapter_dir), adapter_dir);
    const pissa_llama_config *cfg = pissa_model_config(m);
    pissa_dataset *ds;
    pissa_tokenizer *tok = cli_tokenizer(tok_path, model_path, (int32_t)cfg->vocab_size);
    char *template_text = template_path ? cli_read_file(template_path, NULL) : NULL;
    o.chat_template = template_text;
    if (o.format == PISSA_DATA_AUTO) cli_check(pissa_data_detect_format(data_path, &o.format), data_path);
    o.max_len = seq;
    if (o.format == PISSA_DATA_TEXT) { /* plain text: rows of --seq tokens */
        if (!tok) cli_usage_error("%s is plain text: it needs a tokenizer (--tokenizer, or a model folder with one)",
                                  data_path);
        o.max_len = seq ? seq : 256;
    }
    cli_check(pissa_dataset_load(data_path, tok, (int32_t)cfg->vocab_size, &o, &ds), data_path);
    pissa_tokenizer_free(tok);
    free(template_text);
    size_t rows = pissa_dataset_count(ds);
    if (!rows) cli_fail("%s: no rows (a text shorter than --seq %lld tokens gives none)", data_path,
                        (long long)o.max_len);
    int64_t T = pissa_dataset_max_len(ds);
    if (T > cfg->max_position_embeddings)
        cli_fail("%s: rows of %lld tokens exceed the model's max_position_embeddings %lld", data_path, (long long)T,
                 (long long)cfg->max_position_embeddings);
    if ((size_t)batch > rows) batch = (int64_t)rows;
    if (!quiet)
        fprintf(stderr, "pissa-eval: %s%s%s loaded in %.2f s; %zu rows, batches of %lld x %lld\n", model_path,
                adapter_dir ? " + " : "", adapter_dir ? adapter_dir : "", cli_now() - t0, rows, (long long)batch,
                (long long)T);

    /* Every batch has the shape (batch, T), so the model plans its memory once: short rows are padded on the
     * right with ignored labels (causal attention: padding never influences earlier positions), the last batch
     * with empty rows. */
    size_t n = (size_t)(batch * T);
    int32_t *ids = malloc(n * sizeof *ids), *labels = malloc(n * sizeof *labels);
    if (!ids || !labels) cli_fail("out of memory for a %lld x %lld batch", (long long)batch, (long long)T);
    double sum = 0, t1 = cli_now(), last = t1;
    int64_t count = 0, fed = 0;
    for (size_t r0 = 0; r0 < rows; r0 += (size_t)batch) {
        for (size_t i = 0; i < n; i++) ids[i] = 0, labels[i] = PISSA_IGNORE_INDEX;
        for (int64_t b = 0; b < batch && r0 + (size_t)b < rows; b++) {
            pissa_row row;
            cli_check(pissa_dataset_row(ds, r0 + (size_t)b, &row), data_path);
            memcpy(ids + b * T, row.input_ids, (size_t)row.len * sizeof *ids);
            memcpy(labels + b * T, row.labels, (size_t)row.len * sizeof *labels);
            fed += row.len;
        }
        double loss;
        int64_t c;
        cli_check(pissa_model_loss(m, ids, labels, (int)batch, (int)T, &loss, &c), "forward");
        if (!isfinite(loss)) /* a NaN is not a loss to report (nor valid JSON) */
            cli_fail("%s: the loss of rows %zu..%zu is %s: the model computes non-finite values (NaN or Inf "
                     "weights?)", data_path, r0 + 1, r0 + (size_t)batch, isnan(loss) ? "nan" : "inf");
        sum += loss * (double)c; /* the batch mean times its count: a token-weighted mean overall */
        count += c;
        double now = cli_now();
        if (!quiet && (now - last > 1.0 || r0 + (size_t)batch >= rows)) {
            fprintf(stderr, "pissa-eval: %zu/%zu rows, loss %.4f, %.0f tokens/s\n",
                    r0 + (size_t)batch < rows ? r0 + (size_t)batch : rows, rows, count ? sum / count : 0.0,
                    fed / (now - t1));
            last = now;
        }
    }
    double secs = cli_now() - t1;
    if (!count) cli_fail("%s: no targets (every label is -100)", data_path);
    double loss = sum / (double)count, ppl = exp(loss);
    char ppl_text[32]; /* exp overflows past a loss of 709: JSON has no Infinity */
    if (isfinite(ppl)) snprintf(ppl_text, sizeof ppl_text, json ? "%.8g" : "%.4f", ppl);
    else snprintf(ppl_text, sizeof ppl_text, "%s", json ? "null" : "inf");
    if (json) printf("{\"loss\": %.8g, \"ppl\": %s, \"tokens\": %lld}\n", loss, ppl_text, (long long)count);
    else printf("loss %.6f  ppl %s  tokens %lld\n", loss, ppl_text, (long long)count);
    if (!quiet)
        fprintf(stderr, "pissa-eval: %lld tokens in %.2f s (%.0f tokens/s)\n", (long long)fed, secs, fed / secs);
    free(ids);
    free(labels);
    pissa_dataset_free(ds);
    pissa_model_free(m);
    return 0;
}
