/* pissa-tokenize: text to token ids and back, as transformers does it, with any tokenizer libpissa loads (a
 * tokenizer.json, a folder holding one, or a llama2.c tokenizer.bin). Scripts depend on this interface: stdin in,
 * one result on stdout, errors on stderr with exit status 1 (2 for a usage error). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *usage =
    "usage: pissa-tokenize --tokenizer T [--no-special]\n"
    "       pissa-tokenize --tokenizer T --decode [--skip-special]\n"
    "Encodes the UTF-8 text on stdin and prints one JSON array of ids: what transformers'\n"
    "tokenizer(text)[\"input_ids\"] gives. With --decode, reads a JSON array of ids on stdin and prints the text\n"
    "tokenizer.decode(ids) gives, exactly (no newline is added).\n"
    "\n"
    "  --tokenizer T      tokenizer.json, a folder holding tokenizer.json (and tokenizer_config.json), or a\n"
    "                     llama2.c tokenizer.bin\n"
    "  --no-special       encode with add_special_tokens=False (no BOS/EOS or other template tokens)\n"
    "  --decode           decode a JSON array of ids instead of encoding text\n"
    "  --skip-special     with --decode: skip_special_tokens=True\n"
    "  -h, --help         this text\n";

typedef enum { MODE_ENCODE, MODE_DECODE } mode; /* --chat FILE.jsonl (chat templates) comes as a third mode */

/* The whole of stdin, NUL-terminated. */
static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) cli_fail("out of memory");
    for (;;) {
        if (n + 1 >= cap) {
            char *p = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!p) cli_fail("out of memory reading stdin");
            buf = p;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, stdin);
        n += k;
        if (k == 0) {
            if (ferror(stdin)) cli_fail("cannot read stdin: %s", strerror(errno));
            break;
        }
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static size_t skip_space(const char *s, size_t i, size_t n) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

/* A JSON array of integers in int32 range; exits naming the byte at fault. */
static int32_t *parse_ids(const char *s, size_t n, size_t *count) {
    size_t i = skip_space(s, 0, n), k = 0, cap = 64;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) cli_fail("out of memory");
    if (i == n || s[i] != '[') cli_fail("stdin: expected a JSON array of ids, like [1, 2, 3] (byte %zu)", i);
    i = skip_space(s, i + 1, n);
    if (i < n && s[i] == ']') {
        i++;
    } else {
        for (;;) {
            size_t start = i;
            if (i < n && s[i] == '-') i++;
            size_t digits = i;
            while (i < n && s[i] >= '0' && s[i] <= '9') i++;
            if (i == digits || (i < n && (s[i] == '.' || s[i] == 'e' || s[i] == 'E')))
                cli_fail("stdin: byte %zu: expected an integer id", start);
            errno = 0;
            long long v = strtoll(s + start, NULL, 10);
            if (errno || v < INT32_MIN || v > INT32_MAX) cli_fail("stdin: byte %zu: id out of range", start);
            if (k == cap) {
                int32_t *p = realloc(ids, 2 * cap * sizeof *ids);
                if (!p) cli_fail("out of memory");
                ids = p;
                cap *= 2;
            }
            ids[k++] = (int32_t)v;
            i = skip_space(s, i, n);
            if (i < n && s[i] == ',') {
                i = skip_space(s, i + 1, n);
                continue;
            }
            if (i < n && s[i] == ']') {
                i++;
                break;
            }
            cli_fail("stdin: byte %zu: expected ',' or ']' in the array of ids", i);
        }
    }
    if (skip_space(s, i, n) != n) cli_fail("stdin: byte %zu: unexpected text after the array of ids", i);
    *count = k;
    return ids;
}

int main(int argc, char **argv) {
    cli_prog = "pissa-tokenize";
    pissa_set_log_callback(cli_log_to_stderr, NULL);
    const char *tok_path = NULL;
    int add_special = 1, skip_special = 0;
    mode m = MODE_ENCODE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--tokenizer")) tok_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--no-special")) add_special = 0;
        else if (!strcmp(a, "--decode")) m = MODE_DECODE;
        else if (!strcmp(a, "--skip-special")) skip_special = 1;
        else cli_usage_error("unknown option '%s'", a);
    }
    if (!tok_path) cli_usage_error("--tokenizer T is required");
    if (m == MODE_ENCODE && skip_special) cli_usage_error("--skip-special goes with --decode");
    if (m == MODE_DECODE && !add_special) cli_usage_error("--no-special goes with encoding, not --decode");

    pissa_tokenizer *tok;
    cli_check(pissa_tokenizer_load(tok_path, 0, &tok), "cannot load the tokenizer");
    size_t len;
    char *in = read_stdin(&len);
    if (m == MODE_ENCODE) {
        size_t cap = pissa_tokenizer_max_tokens(tok, len), n = 0;
        if (cap == SIZE_MAX) cli_fail("stdin: %zu bytes is too long to encode", len);
        int32_t *ids = malloc((cap ? cap : 1) * sizeof *ids);
        if (!ids) cli_fail("out of memory for %zu bytes of text", len);
        cli_check(pissa_tokenizer_encode_text(tok, in, len, add_special, ids, cap, &n), "stdin");
        putchar('[');
        for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", (int)ids[i]);
        puts("]");
        free(ids);
    } else {
        size_t n, out_len = 0;
        int32_t *ids = parse_ids(in, len, &n);
        pissa_tokenizer_decode_text(tok, ids, n, skip_special, NULL, 0, &out_len); /* size query */
        char *text = malloc(out_len + 1);
        if (!text) cli_fail("out of memory");
        cli_check(pissa_tokenizer_decode_text(tok, ids, n, skip_special, text, out_len + 1, &out_len), "decode");
        fwrite(text, 1, out_len, stdout);
        free(text);
        free(ids);
    }
    free(in);
    pissa_tokenizer_free(tok);
    if (fflush(stdout) != 0 || ferror(stdout)) cli_fail("cannot write stdout");
    return 0;
}
