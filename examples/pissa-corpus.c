/* pissa-corpus: writes a synthetic token corpus (JSONL rows {"input_ids": [...]}) drawn from a sparse Markov
 * chain, so that the fine-tune demo can pretrain a model and then fine-tune it on a shifted task with no download.
 * Each token v has K successors with fixed decreasing probabilities; --shift F redraws the successors of a fraction F
 * of the tokens (a different chain sharing the rest: the "shifted task"). The chain depends only on --chain-seed and
 * --shift; the rows on --seed, so train and held-out sets of one task differ only in --seed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *usage =
    "usage: pissa-corpus --out FILE [options]\n"
    "Writes JSONL rows {\"input_ids\": [...]} sampled from a sparse Markov chain over --vocab tokens.\n"
    "  --rows N         number of rows (default 1000)\n"
    "  --len T          tokens per row (default 64)\n"
    "  --vocab V        vocabulary size (default 256)\n"
    "  --branch K       successors per token, probabilities ~ 1/2, 1/4, ... (default 4)\n"
    "  --shift F        fraction of tokens whose successors are redrawn: the shifted task (default 0)\n"
    "  --chain-seed S   seed of the chain (default 1)\n"
    "  --seed S         seed of the sampled rows (default 1)\n";


/* Draws K distinct successors of one token into succ[0..K). */
static void draw_successors(uint64_t *x, int64_t V, int64_t K, int64_t *succ) {
    for (int64_t j = 0; j < K; j++) {
        int fresh;
        do {
            succ[j] = (int64_t)(cli_mix(x) % (uint64_t)V);
            fresh = 1;
            for (int64_t i = 0; i < j; i++) fresh &= succ[i] != succ[j];
        } while (!fresh);
    }
}

int main(int argc, char **argv) {
    cli_prog = "pissa-corpus";
    const char *out = NULL;
    int64_t rows = 1000, T = 64, V = 256, K = 4;
    double shift = 0;
    uint64_t chain_seed = 1, seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--out")) out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--rows")) rows = cli_int(a, cli_value(argc, argv, &i), 1, 1 << 24);
        else if (!strcmp(a, "--len")) T = cli_int(a, cli_value(argc, argv, &i), 2, 1 << 20);
        else if (!strcmp(a, "--vocab")) V = cli_int(a, cli_value(argc, argv, &i), 2, 1 << 22);
        else if (!strcmp(a, "--branch")) K = cli_int(a, cli_value(argc, argv, &i), 1, 64);
        else if (!strcmp(a, "--shift")) shift = cli_double(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--chain-seed")) chain_seed = cli_u64(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--seed")) seed = cli_u64(a, cli_value(argc, argv, &i));
        else cli_usage_error("unknown option '%s'", a);
    }
    if (!out) cli_usage_error("--out FILE is required");
    if (K > V) cli_usage_error("--branch must not exceed --vocab");
    if (!(shift >= 0 && shift <= 1)) cli_usage_error("--shift must be in [0, 1]");

    /* succ (V, K): the chain. p_j ∝ 2^-j, so a row's entropy is about 1.2 nats per token for K = 4. */
    int64_t *succ = malloc(sizeof(int64_t) * (size_t)(V * K));
    double *cdf = malloc(sizeof(double) * (size_t)K);
    if (!succ || !cdf) cli_fail("out of memory");
    double z = 0, acc = 0;
    for (int64_t j = 0; j < K; j++) z += 1.0 / (double)(1LL << j);
    for (int64_t j = 0; j < K; j++) cdf[j] = acc += 1.0 / (double)(1LL << j) / z;
    uint64_t cx = chain_seed, sx = chain_seed ^ 0x5eed5eed5eedULL;
    for (int64_t v = 0; v < V; v++) draw_successors(&cx, V, K, succ + v * K);
    /* The shifted chain redraws the successors of a chosen fraction of tokens with a second stream, so the base
     * chain stays the same whatever the shift. */
    for (int64_t v = 0; v < V; v++) {
        int64_t redrawn[64];
        int moved = cli_uniform(&sx) < shift;
        draw_successors(&sx, V, K, redrawn);
        if (moved) memcpy(succ + v * K, redrawn, sizeof(int64_t) * (size_t)K);
    }

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *f = fopen(tmp, "w");
    if (!f) cli_fail("cannot write %s", tmp);
    uint64_t rx = seed * 0x2545f4914f6cdd1dULL + 7;
    for (int64_t r = 0; r < rows; r++) {
        int64_t t = (int64_t)(cli_mix(&rx) % (uint64_t)V);
        fputs("{\"input_ids\": [", f);
        for (int64_t i = 0; i < T; i++) {
            fprintf(f, i ? ", %lld" : "%lld", (long long)t);
            double u = cli_uniform(&rx);
            int64_t j = 0;
            while (j < K - 1 && u >= cdf[j]) j++;
            t = succ[t * K + j];
        }
        fputs("]}\n", f);
    }
    if (fclose(f) != 0 || rename(tmp, out) != 0) cli_fail("cannot write %s", out);
    free(succ);
    free(cdf);
    return 0;
}
