/* Encode throughput of libpissa's tokenizers, one thread: the first --bytes of a text encoded as one string
 * (pissa_tokenizer_encode_text with add_special_tokens), --reps times after a warm-up. Prints one line per tokenizer:
 * name, bytes, ids, load seconds, median encode seconds, MB/s (1 MB = 10^6 bytes). bench/run_tokenize.sh runs it next
 * to transformers.js (bench_tokenize.mjs) on the same text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"

static const char *usage = "usage: bench_tokenize --text FILE [--bytes N] [--reps R] NAME=TOKENIZER...\n";

int main(int argc, char **argv) {
    cli_prog = "bench_tokenize";
    const char *text_path = NULL;
    int64_t bytes = 1000000, reps = 5;
    int first_tok = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--text")) text_path = cli_value(argc, argv, &i);
        else if (!strcmp(argv[i], "--bytes")) bytes = cli_int("--bytes", cli_value(argc, argv, &i), 1, INT32_MAX);
        else if (!strcmp(argv[i], "--reps")) reps = cli_int("--reps", cli_value(argc, argv, &i), 1, 1000);
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (argv[i][0] == '-') cli_usage_error("unknown option '%s'", argv[i]);
        else {
            first_tok = i;
            break;
        }
    }
    if (!text_path || first_tok == argc) cli_usage_error("--text FILE and at least one NAME=TOKENIZER are required");
    FILE *f = fopen(text_path, "rb");
    if (!f) cli_fail("cannot open %s", text_path);
    char *text = xmalloc((size_t)bytes + 1);
    size_t len = fread(text, 1, (size_t)bytes, f);
    fclose(f);
    while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80 && len < (size_t)bytes) len--; /* whole characters */
    printf("tokenizer\tbytes\tids\tload_s\tencode_s\tMB_per_s\n");
    for (int i = first_tok; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) cli_usage_error("'%s' is not NAME=TOKENIZER", argv[i]);
        *eq = '\0';
        double t0 = cli_now();
        pissa_tokenizer *tok;
        cli_check(pissa_tokenizer_load(eq + 1, 0, &tok), eq + 1);
        double load = cli_now() - t0;
        size_t cap = pissa_tokenizer_max_tokens(tok, len), n = 0;
        int32_t *ids = xmalloc(cap * sizeof *ids);
        double *t = xmalloc((size_t)reps * sizeof *t);
        cli_check(pissa_tokenizer_encode_text(tok, text, len, 1, ids, cap, &n), "encode"); /* warm-up */
        for (int64_t r = 0; r < reps; r++) {
            double a = cli_now();
            cli_check(pissa_tokenizer_encode_text(tok, text, len, 1, ids, cap, &n), "encode");
            t[r] = cli_now() - a;
        }
        qsort(t, (size_t)reps, sizeof *t, cmp_double);
        double med = t[reps / 2];
        printf("%s\t%zu\t%zu\t%.3f\t%.4f\t%.2f\n", argv[i], len, n, load, med, (double)len / med / 1e6);
        fflush(stdout);
        free(t);
        free(ids);
        pissa_tokenizer_free(tok);
    }
    free(text);
    return 0;
}
