/* pissa-generate: text from a Llama model (Hugging Face folder or llama2.c checkpoint), optionally through a PEFT
 * LoRA/PiSSA adapter, as karpathy/llama2.c's run does it: the prompt is echoed, then tokens are sampled until
 * --steps positions or the end of the text (BOS for a llama2.c tokenizer; eos or an end-of-turn token for a
 * tokenizer.json). Only the text goes to stdout; progress and speed to stderr. */
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
    "  --prompt TEXT      text to continue (default: none, generate from BOS)\n"
    "  --steps N          positions in all, prompt included (default 256; 0 = the model's maximum)\n"
    "  --temperature X    0 = greedy (argmax); otherwise softmax(logits/X) sampling (default 1.0)\n"
    "  --top-p P          nucleus sampling threshold in (0, 1]; 1 = no truncation (default 0.9)\n"
    "  --seed S           random seed for sampling (default: the time, printed on stderr)\n"
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

int main(int argc, char **argv) {
    cli_prog = "pissa-generate";
    pissa_set_log_callback(cli_log_to_stderr, NULL);
    const char *model = NULL, *adapter = NULL, *tok_path = NULL, *prompt = "";
    int64_t steps = 256;
    double temperature = 1.0, topp = 0.9;
    uint64_t seed = 0;
    int have_seed = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--model")) model = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--adapter")) adapter = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--tokenizer")) tok_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--prompt")) prompt = cli_value(argc, argv, &i);
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
        else cli_usage_error("unknown option '%s'", a);
    }
    if (!model) cli_usage_error("--model PATH is required");
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
    cli_check(pissa_generator_create(model, adapter, steps, &g), "cannot load the model");
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
    cli_check(pissa_generate(g, tok, prompt, steps, (float)temperature, (float)topp, seed, on_token, &s, &positions),
              "generate");
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
