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
    "       pissa-tokenize --tokenizer T --chat FILE.jsonl [--chat-template FILE] [--all-tokens]\n"
    "Encodes the UTF-8 text on stdin and prints one JSON array of ids: what transformers'\n"
    "tokenizer(text)[\"input_ids\"] gives. With --decode, reads a JSON array of ids on stdin and prints the text\n"
    "tokenizer.decode(ids) gives, exactly (no newline is added). With --chat, prints for each line of FILE one line\n"
    "{\"input_ids\": [...], \"labels\": [...]}: the row as pissa-finetune trains on it (docs/data.md): for\n"
    "{\"messages\": [...]}, the chat template rendered with add_generation_prompt false and its tokens, labels -100\n"
    "but on the assistant turns' tokens (each with its end-of-turn token); every other row format too.\n"
    "\n"
    "  --tokenizer T      tokenizer.json, a folder holding tokenizer.json (and tokenizer_config.json), or a\n"
    "                     llama2.c tokenizer.bin\n"
    "  --no-special       encode with add_special_tokens=False (no BOS/EOS or other template tokens)\n"
    "  --decode           decode a JSON array of ids instead of encoding text\n"
    "  --skip-special     with --decode: skip_special_tokens=True\n"
    "  --chat FILE        encode the JSONL rows of FILE (- for stdin) as training rows\n"
    "  --chat-template F  with --chat: the Jinja chat template in file F instead of the tokenizer's\n"
    "  --all-tokens       with --chat: every token is a target (TRL's assistant_only_loss and completion_only_loss\n"
    "                     off)\n"
    "  -h, --help         this text\n";

typedef enum { MODE_ENCODE, MODE_DECODE, MODE_CHAT } mode;

/* The whole of stdin, NUL-terminated. */
static char *read_stdin(size_t *len);

static void print_ids(FILE *f, const int32_t *v, int64_t n) {
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) fprintf(f, i ? ", %d" : "%d", (int)v[i]);
    fputc(']', f);
}

/* --chat: every line of IN (LEN bytes, NUL-terminated) a training row, printed as {"input_ids", "labels"}; every
 * line is encoded before anything is printed, so a bad line leaves stdout empty. Blank lines are skipped. */
static void encode_rows(pissa_row_encoder *e, const char *name, char *in, size_t len) {
    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    if (!out) cli_fail("out of memory");
    char *p = in, *end = in + len;
    for (size_t line = 1; p < end; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p)), *eol = nl ? nl : end;
        size_t n = (size_t)(eol - p);
        while (n && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t')) k++;
        if (k < n) {
            pissa_row r;
            if (pissa_row_encoder_encode(e, p, n, &r) != PISSA_OK)
                cli_fail("%s:%zu: %s", name, line, pissa_last_error());
            fputs("{\"input_ids\": ", out);
            print_ids(out, r.input_ids, r.len);
            fputs(", \"labels\": ", out);
            print_ids(out, r.labels, r.len);
            fputs("}\n", out);
        }
        p = nl ? nl + 1 : end;
    }
    if (fclose(out) != 0) cli_fail("out of memory");
    fwrite(buf, 1, size, stdout);
    free(buf);
}

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
    const char *tok_path = NULL, *chat_path = NULL, *template_path = NULL;
    int add_special = 1, skip_special = 0, all_tokens = 0;
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
        else if (!strcmp(a, "--chat")) chat_path = cli_value(argc, argv, &i), m = MODE_CHAT;
        else if (!strcmp(a, "--chat-template")) template_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--all-tokens")) all_tokens = 1;
        else cli_usage_error("unknown option '%s'", a);
    }
    if (!tok_path) cli_usage_error("--tokenizer T is required");
    if (m == MODE_ENCODE && skip_special) cli_usage_error("--skip-special goes with --decode");
    if (m == MODE_DECODE && !add_special) cli_usage_error("--no-special goes with encoding, not --decode");
    if (chat_path && (skip_special || !add_special || m != MODE_CHAT))
        cli_usage_error("--chat goes with neither --decode, --skip-special nor --no-special");
    if ((template_path || all_tokens) && !chat_path) cli_usage_error("--chat-template and --all-tokens go with --chat");

    pissa_tokenizer *tok;
    cli_check(pissa_tokenizer_load(tok_path, 0, &tok), "cannot load the tokenizer");
    size_t len;
    char *in = NULL;
    if (m == MODE_CHAT) {
        pissa_data_opts o = pissa_data_default_opts();
        if (all_tokens) o.assistant_only_loss = o.completion_only_loss = 0;
        char *tmpl = NULL;
        if (template_path) tmpl = cli_read_file(template_path, NULL);
        o.chat_template = tmpl;
        pissa_row_encoder *e;
        cli_check(pissa_row_encoder_create(tok, &o, &e), template_path ? template_path : "chat template");
        if (!strcmp(chat_path, "-")) in = read_stdin(&len);
        else in = cli_read_file(chat_path, &len);
        encode_rows(e, chat_path, in, len);
        pissa_row_encoder_free(e);
        free(tmpl);
    } else if (m == MODE_ENCODE) {
        in = read_stdin(&len);
        size_t cap = pissa_tokenizer_max_tokens(tok, len), n = 0;
        if (cap == SIZE_MAX) cli_fail("stdin: %zu bytes is too long to encode", len);
        int32_t *ids = malloc((cap ? cap : 1) * sizeof *ids);
        if (!ids) cli_fail("out of memory for %zu bytes of text", len);
        cli_check(pissa_tokenizer_encode_text(tok, in, len, add_special, ids, cap, &n), "stdin");
        print_ids(stdout, ids, (int64_t)n);
        putchar('\n');
        free(ids);
    } else {
        in = read_stdin(&len);
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
