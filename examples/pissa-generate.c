/* pissa-generate: text from a Llama model (Hugging Face folder or llama2.c checkpoint), optionally through a PEFT
 * LoRA/PiSSA adapter, as karpathy/llama2.c's run does it: the prompt is echoed, then tokens are sampled until
 * --steps positions or the end of the text (BOS for a llama2.c tokenizer; eos or an end-of-turn token for a
 * tokenizer.json). With --chat the prompt is a user message put through the tokenizer's chat template, and only the
 * reply is printed. Only the text goes to stdout; progress and speed to stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char *usage =
    "usage: pissa-generate --model PATH [--tokenizer T] [options]\n"
    "Generates text with a Llama model, as llama2.c's run does: the prompt is fed, then tokens are sampled until\n"
    "STEPS positions in all or until the model ends the text (llama2.c tokenizer: BOS; tokenizer.json: its eos\n"
    "or end-of-turn tokens). The prompt and the generated text go to stdout; timing goes to stderr.\n"
    "\n"
    "  --model PATH       Hugging Face folder (config.json + safetensors) or llama2.c checkpoint (.bin)\n"
    "  --adapter DIR      PEFT LoRA/PiSSA adapter folder (adapter_config.json + adapter_model.safetensors)\n"
    "  --tokenizer T      llama2.c tokenizer (tokenizer.bin, tok512.bin, ...), tokenizer.json, or a folder holding\n"
    "                     tokenizer.json (default: the --model folder, when it holds tokenizer.json)\n"
    "  --prompt TEXT      text to continue (default: none, generate from BOS); with --chat, the user's message\n"
    "  --chat             a chat turn: the tokenizer's chat template (tokenizer.json's tokenizer_config.json) renders\n"
    "                     [--system TEXT,] --prompt TEXT as a conversation with add_generation_prompt, and the\n"
    "                     model's reply is printed, up to its end-of-turn token (<|im_end|>, <|eot_id|>, eos, ...)\n"
    "  --system TEXT      with --chat: a system message first\n"
    "  --chat-template F  with --chat: a Jinja chat template instead of the tokenizer's\n"
    "  --steps N          positions in all, prompt included (default 256; 0 = the model's maximum)\n"
    "  --temperature X    0 = greedy (argmax); otherwise softmax(logits/X) sampling (default 1.0)\n"
    "  --top-p P          nucleus sampling threshold in (0, 1]; 1 = no truncation (default 0.9)\n"
    "  --seed S           random seed for sampling (default: the time, printed on stderr)\n"
    CLI_BASE_DTYPE_HELP
    "  --threads N        BLAS threads (default: OPENBLAS_NUM_THREADS or all cores)\n"
    "  -h, --help         this text\n";

typedef struct out_state {
    int64_t n_tokens;
    double first; /* time of the first token; speed is measured from it, as run.c does */
} out_state;

static int on_token(void *user, int32_t token, const char *piece, size_t len) {
    (void)token;
    out_state *s = user;
    if (len) fwrite(piece, 1, len, stdout);
    fflush(stdout);
    if (s->n_tokens++ == 0) s->first = cli_now();
    return 0;
}

/* The tokens of the conversation [SYSTEM,] USER rendered by the chat template with add_generation_prompt and
 * encoded without special tokens (transformers' apply_chat_template(tokenize=True)). */
static size_t chat_prompt(const pissa_tokenizer *tok, const char *template_path, const char *system,
                          const char *user, int32_t **ids) {
    if (pissa_tokenizer_get_kind(tok) != PISSA_TOKENIZER_HF) cli_fail("--chat needs a tokenizer.json");
    char *json = NULL, *text;
    size_t size = 0, len, n;
    FILE *f = open_memstream(&json, &size);
    if (!f) cli_fail("out of memory");
    fputc('[', f);
    for (int k = system ? 0 : 1; k < 2; k++) { /* {"role": ..., "content": ...} with the text as a JSON string */
        fprintf(f, "%s{\"role\": \"%s\", \"content\": ", k && system ? ", " : "", k ? "user" : "system");
        cli_json_string(f, k ? user : system);
        fputc('}', f);
    }
    fputc(']', f);
    if (fclose(f) != 0) cli_fail("out of memory");
    char *tmpl = template_path ? cli_read_file(template_path, NULL) : NULL;
    cli_check(pissa_chat_apply(tok, tmpl, json, 1, NULL, &text, &len), template_path ? template_path : "--chat");
    size_t cap = pissa_tokenizer_max_tokens(tok, len);
    if (cap == SIZE_MAX || !(*ids = malloc((cap ? cap : 1) * sizeof **ids))) cli_fail("out of memory");
    cli_check(pissa_tokenizer_encode_text(tok, text, len, 0, *ids, cap, &n), "--chat");
    pissa_free(text);
    free(tmpl);
    free(json);
    return n;
}

int main(int argc, char **argv) {
    cli_prog = "pissa-generate";
    pissa_set_log_callback(cli_log_to_stderr, NULL);
    const char *model = NULL, *adapter = NULL, *tok_path = NULL, *prompt = "", *system = NULL, *template_path = NULL;
    int chat = 0;
    int64_t steps = 256;
    double temperature = 1.0, topp = 0.9;
    uint64_t seed = 0;
    int have_seed = 0, threads = 0;
    pissa_model_opts mo = pissa_model_default_opts();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--model")) model = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--adapter")) adapter = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--tokenizer")) tok_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--prompt")) prompt = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--chat")) chat = 1;
        else if (!strcmp(a, "--system")) system = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--chat-template")) template_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--steps")) steps = cli_int(a, cli_value(argc, argv, &i), 0, INT32_MAX);
        else if (!strcmp(a, "--temperature")) {
            temperature = cli_double(a, cli_value(argc, argv, &i));
            if (!(temperature >= 0) || !isfinite(temperature))
                cli_usage_error("--temperature must be a number >= 0 (0 = greedy)");
        } else if (!strcmp(a, "--top-p")) {
            topp = cli_double(a, cli_value(argc, argv, &i));
            if (!(topp > 0 && topp <= 1)) cli_usage_error("--top-p must be in (0, 1]");
        } else if (!strcmp(a, "--seed")) {
            seed = cli_u64(a, cli_value(argc, argv, &i));
            have_seed = 1;
        } else if (!strcmp(a, "--threads")) threads = (int)cli_int(a, cli_value(argc, argv, &i), 1, 1024);
        else if (!strcmp(a, "--base-dtype")) mo.base_dtype = cli_qtype(a, cli_value(argc, argv, &i));
        else cli_usage_error("unknown option '%s'", a);
    }
    if (!model) cli_usage_error("--model PATH is required");
    if ((system || template_path) && !chat) cli_usage_error("--system and --chat-template go with --chat");
    char *model_tok = NULL;
    if (!tok_path) { /* a Hugging Face folder brings its own tokenizer */
        model_tok = malloc(strlen(model) + sizeof "/tokenizer.json");
        if (!model_tok) cli_fail("out of memory");
        sprintf(model_tok, "%s/tokenizer.json", model);
        FILE *f = fopen(model_tok, "rb");
        if (!f) cli_usage_error("--tokenizer T is required (%s holds no tokenizer.json)", model);
        fclose(f);
        tok_path = model_tok;
    }
    if (!have_seed) seed = (uint64_t)time(NULL);
    if (threads) pissa_set_num_threads(threads);

    double t0 = cli_now();
    /* A KV cache as long as the run needs: STEPS positions, at most the model's context. */
    pissa_generator *g;
    cli_check(pissa_generator_create_with_opts(model, adapter, steps, &mo, &g), "cannot load the model");
    int64_t max_pos = pissa_generator_max_seq_len(g);
    if (steps > max_pos)
        fprintf(stderr, "pissa-generate: --steps %lld exceeds the model's %lld positions; using %lld\n",
                (long long)steps, (long long)max_pos, (long long)max_pos);
    if (steps == 0 || steps > max_pos) steps = max_pos;
    pissa_tokenizer *tok;
    cli_check(pissa_tokenizer_load(tok_path, (int32_t)pissa_generator_vocab_size(g), &tok),
              "cannot load the tokenizer");
    fprintf(stderr, "pissa-generate: %s%s%s loaded in %.2f s; steps %lld, temperature %g, top-p %g, seed %llu\n",
            model, adapter ? " + " : "", adapter ? adapter : "", cli_now() - t0, (long long)steps, temperature, topp,
            (unsigned long long)seed);

    out_state s = {0};
    int64_t positions = 0;
    if (chat) {
        int32_t *ids;
        size_t n = chat_prompt(tok, template_path, system, prompt, &ids);
        cli_check(pissa_generate_tokens(g, tok, ids, n, steps, (float)temperature, (float)topp, seed, on_token, &s,
                                        &positions), "generate");
        free(ids);
    } else {
        cli_check(pissa_generate(g, tok, prompt, steps, (float)temperature, (float)topp, seed, on_token, &s,
                                 &positions), "generate");
    }
    double end = cli_now();
    printf("\n");
    fflush(stdout);
    if (positions > 1 && end > s.first)
        fprintf(stderr, "pissa-generate: %lld positions, %.1f tokens/s\n", (long long)positions,
                (double)(positions - 1) / (end - s.first));
    pissa_tokenizer_free(tok);
    pissa_generator_free(g);
    free(model_tok);
    return 0;
}
