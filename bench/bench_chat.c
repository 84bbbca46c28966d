/* Benchmark of chat template rendering: for each template of tests/reference/chat/templates.json, the time of one
 * render of a five-turn conversation ("system_multi_turn", or "no_system" for templates that refuse a system
 * message), parsed once (the renderer's own speed) and parsed on every call (pissa_chat_template_render). The
 * template/conversation pairs go to OUT (TSV) so that bench_chat_ref.mjs (@huggingface/jinja) and
 * bench_chat_jinja2.py (Python's jinja2, as transformers runs it) time the very same renders.
 *
 *   bench_chat --dir tests/reference/chat [--shared ../shared/data] [--reps 2000] [--out pairs.tsv]
 * One thread. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"
#include "jinja.h"
#include "pissa.h"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) cli_fail("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = xmalloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) cli_fail("cannot read %s", path);
    s[n] = '\0';
    fclose(f);
    return s;
}

static cJSON *load(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = slurp(path);
    cJSON *j = cJSON_Parse(text);
    if (!j) cli_fail("%s is not JSON", path);
    free(text);
    return j;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *shared = "../shared/data", *out_path = NULL;
    int reps = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dir")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "--shared")) shared = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--out")) out_path = argv[i + 1];
        else cli_fail("unknown option %s", argv[i]);
    }
    if (!dir || reps < 1) cli_fail("usage: bench_chat --dir tests/reference/chat [--shared DIR] [--reps N] [--out F]");
    cJSON *templates = load(dir, "templates.json"), *convs = load(dir, "conversations.json");
    FILE *out = out_path ? fopen(out_path, "w") : NULL;
    if (out_path && !out) cli_fail("cannot write %s", out_path);
    printf("%-18s %-18s %8s %14s %14s\n", "template", "conversation", "bytes", "render (us)", "parse+render");
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(templates, "templates")) {
        const char *name = cJSON_GetObjectItem(t, "name")->valuestring;
        const cJSON *file = cJSON_GetObjectItem(t, "file"), *sh = cJSON_GetObjectItem(t, "shared");
        char path[1024], *text;
        if (file) {
            snprintf(path, sizeof path, "%s/%s", dir, file->valuestring);
            text = slurp(path);
        } else {
            snprintf(path, sizeof path, "%s/%s", shared, sh->valuestring);
            FILE *f = fopen(path, "rb");
            if (!f) {
                fprintf(stderr, "bench_chat: %s is missing; %s left out\n", path, name);
                continue;
            }
            fclose(f);
            char *cfg = slurp(path);
            cJSON *j = cJSON_Parse(cfg);
            text = strdup(cJSON_GetObjectItem(j, "chat_template")->valuestring);
            cJSON_Delete(j);
            free(cfg);
        }
        char *extra = cJSON_PrintUnformatted(cJSON_GetObjectItem(t, "context"));
        const char *tried[2] = {"system_multi_turn", "no_system"};
        for (int k = 0; k < 2; k++) {
            const cJSON *conv;
            cJSON_ArrayForEach(conv, cJSON_GetObjectItem(convs, "conversations"))
                if (!strcmp(cJSON_GetObjectItem(conv, "name")->valuestring, tried[k])) break;
            char *msgs = cJSON_PrintUnformatted(cJSON_GetObjectItem(conv, "messages"));
            char *rendered = NULL;
            size_t len = 0;
            if (pissa_chat_template_render(text, msgs, 1, extra, &rendered, &len) != PISSA_OK) {
                free(msgs);
                continue; /* this template refuses the conversation: try the next */
            }
            pissa_free(rendered);
            /* parsed once, rendered REPS times, through the variables pissa_chat_template_render passes */
            pissa__jinja_template *tm;
            cli_check(pissa__jinja_parse(text, strlen(text), &tm), "parse");
            const char *names[4] = {"messages", "add_generation_prompt", "tools", "documents"};
            const char *values[4] = {msgs, "true", "null", "null"};
            double t0 = cli_now();
            for (int r = 0; r < reps; r++) {
                cli_check(pissa__jinja_render_vars(tm, 4, names, values, extra, NULL, &rendered, NULL), "render");
                free(rendered);
            }
            double t1 = cli_now();
            for (int r = 0; r < reps; r++) {
                cli_check(pissa_chat_template_render(text, msgs, 1, extra, &rendered, NULL), "render");
                pissa_free(rendered);
            }
            double t2 = cli_now();
            pissa__jinja_free(tm);
            printf("%-18s %-18s %8zu %14.1f %14.1f\n", name, tried[k], len, 1e6 * (t1 - t0) / reps,
                   1e6 * (t2 - t1) / reps);
            if (out) fprintf(out, "%s\t%s\t%s\t%.3f\n", name, tried[k], file ? file->valuestring : path,
                             1e6 * (t1 - t0) / reps);
            free(msgs);
            break;
        }
        free(extra);
        free(text);
    }
    if (out) fclose(out);
    cJSON_Delete(templates);
    cJSON_Delete(convs);
    return 0;
}
