/* Reverse-mode autograd over the kernels of ops.h: a static tape per batch shape, memory planned once. */
#include "autograd.h"
#include "parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

/* ---- parameters ---- */

pissa_status pissa__params_add(pissa__params *ps, const char *name, float *data, int64_t rows, int64_t cols,
                               int trainable, int *id) {
    if (rows <= 0 || cols <= 0 || rows > INT32_MAX || cols > INT32_MAX)
        return pissa__fail(PISSA_ERR_SHAPE, "parameter '%s': bad shape (%lld, %lld)", name, (long long)rows,
                           (long long)cols);
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? 2 * ps->cap : 64;
        pissa__param *p = realloc(ps->p, cap * sizeof *p);
        if (!p) return pissa__fail(PISSA_ERR_NOMEM, "out of memory for parameter '%s'", name);
        ps->p = p;
        ps->cap = cap;
    }
    ps->p[ps->n] = (pissa__param){.name = name, .data = data, .rows = rows, .cols = cols, .trainable = trainable};
    if (data) pissa__qweight_wrap(&ps->p[ps->n].q, PISSA_QTYPE_F32, rows, cols, data, NULL); /* aligned: no error */
    *id = (int)ps->n++;
    for (size_t i = 0; i < ps->n; i++) ps->p[i].grad = NULL; /* stale until the next plan */
    free(ps->grad_arena);
    ps->grad_arena = NULL;
    ps->grad_floats = 0;
    return PISSA_OK;
}

pissa_status pissa__params_add_frozen(pissa__params *ps, const char *name, const pissa__qweight *q, int *id) {
    PISSA_TRY(pissa__params_add(ps, name, NULL, q->rows, q->cols, 0, id));
    pissa__params_rebind(ps, *id, q);
    return PISSA_OK;
}

void pissa__params_rebind(pissa__params *ps, int id, const pissa__qweight *q) {
    pissa__param *p = &ps->p[id];
    p->data = q->type == PISSA_QTYPE_F32 ? (float *)q->data : NULL;
    p->q = *q;
    p->q.owned = NULL; /* a view: the owner releases */
}

pissa_status pissa__params_plan(pissa__params *ps) {
    size_t total = 0;
    for (size_t i = 0; i < ps->n; i++)
        if (ps->p[i].trainable) total += (size_t)(ps->p[i].rows * ps->p[i].cols);
    free(ps->grad_arena);
    ps->grad_arena = NULL;
    ps->grad_floats = 0;
    for (size_t i = 0; i < ps->n; i++) ps->p[i].grad = NULL;
    if (!total) return PISSA_OK;
    ps->grad_arena = pissa__calloc(total, sizeof(float));
    if (!ps->grad_arena) return pissa__fail(PISSA_ERR_NOMEM, "out of memory for %zu parameter gradients", total);
    ps->grad_floats = total;
    size_t off = 0;
    for (size_t i = 0; i < ps->n; i++)
        if (ps->p[i].trainable) {
            ps->p[i].grad = ps->grad_arena + off;
            off += (size_t)(ps->p[i].rows * ps->p[i].cols);
        }
    return PISSA_OK;
}

void pissa__params_zero_grad(pissa__params *ps) {
    if (ps->grad_arena) memset(ps->grad_arena, 0, ps->grad_floats * sizeof(float));
}

void pissa__params_free(pissa__params *ps) {
    free(ps->p);
    free(ps->grad_arena);
    memset(ps, 0, sizeof *ps);
}

/* ---- building ---- */

pissa_status pissa__graph_create(pissa__params *ps, int B, int T, pissa__graph **out) {
    if (B <= 0 || T <= 0 || (int64_t)B * T > INT32_MAX)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "graph: bad batch shape (%d, %d)", B, T);
    pissa__graph *g = pissa__calloc(1, sizeof *g);
    if (!g) return pissa__fail(PISSA_ERR_NOMEM, "out of memory for a graph");
    g->params = ps;
    g->B = B;
    g->T = T;
    g->N = B * T;
    g->open_seg = g->resident = -1;
    pissa__rng_seed(&g->rng, 0);
    *out = g;
    return PISSA_OK;
}

void pissa__graph_free(pissa__graph *g) {
    if (!g) return;
    free(g->nodes);
    free(g->values);
    free(g->segs);
    free(g->act);
    free(g->grad);
    free(g->scratch);
    free(g->masks);
    free(g->ints);
    free(g);
}

static const pissa__param *param(const pissa__graph *g, int id) { return &g->params->p[id]; }

static pissa_status check_value(const pissa__graph *g, int v, const char *op) {
    if (v < 0 || v >= g->n_values) return pissa__fail(PISSA_ERR_INVALID_ARG, "graph %s: no value %d", op, v);
    return PISSA_OK;
}
static pissa_status check_param(const pissa__graph *g, int p, const char *op) {
    if (p < 0 || (size_t)p >= g->params->n)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "graph %s: no parameter %d", op, p);
    return PISSA_OK;
}

/* Appends a value of COLS columns and a node producing it (out = -1 for none). */
static pissa_status push(pissa__graph *g, pissa__node nd, int64_t cols, int *out) {
    if (g->planned) return pissa__fail(PISSA_ERR_INVALID_ARG, "graph: nodes added after planning");
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 64;
        pissa__node *n = realloc(g->nodes, (size_t)cap * sizeof *n);
        if (!n) return pissa__fail(PISSA_ERR_NOMEM, "out of memory for graph nodes");
        g->nodes = n;
        g->cap_nodes = cap;
    }
    if (g->n_values == g->cap_values) {
        int cap = g->cap_values ? 2 * g->cap_values : 64;
        pissa__value *v = realloc(g->values, (size_t)cap * sizeof *v);
        if (!v) return pissa__fail(PISSA_ERR_NOMEM, "out of memory for graph values");
        g->values = v;
        g->cap_values = cap;
    }
    /* A value needs a gradient when an input does or a parameter the op differentiates is trainable. */
    int rg = 0;
    for (int i = 0; i < 3; i++) {
        if (nd.in[i] >= 0 && g->values[nd.in[i]].requires_grad) rg = 1;
        if (nd.par[i] >= 0 && param(g, nd.par[i])->trainable) rg = 1;
    }
    if (cols > 0) {
        nd.out = g->n_values;
        g->values[g->n_values++] = (pissa__value){.cols = cols, .requires_grad = rg};
        if (out) *out = nd.out;
    } else {
        nd.out = -1;
    }
    nd.seg = g->open_seg;
    g->nodes[g->n_nodes++] = nd;
    return PISSA_OK;
}

static pissa__node node(pissa__op op) {
    pissa__node nd = {.op = op};
    for (int i = 0; i < 3; i++) nd.in[i] = nd.par[i] = -1;
    return nd;
}

pissa_status pissa__g_embedding(pissa__graph *g, int wte, int *out) {
    PISSA_TRY(check_param(g, wte, "embedding"));
    pissa__node nd = node(PISSA_OP_EMBEDDING);
    nd.par[0] = wte;
    nd.dim[0] = (int)param(g, wte)->rows; /* V */
    nd.dim[1] = (int)param(g, wte)->cols; /* C */
    return push(g, nd, nd.dim[1], out);
}

pissa_status pissa__g_matmul(pissa__graph *g, int x, int w, int *out) {
    PISSA_TRY(check_value(g, x, "matmul"));
    PISSA_TRY(check_param(g, w, "matmul"));
    const pissa__param *W = param(g, w);
    if (W->cols != g->values[x].cols)
        return pissa__fail(PISSA_ERR_SHAPE, "matmul: '%s' is (%lld, %lld) but its input has %lld columns", W->name,
                           (long long)W->rows, (long long)W->cols, (long long)g->values[x].cols);
    pissa__node nd = node(PISSA_OP_MATMUL);
    nd.in[0] = x;
    nd.par[0] = w;
    nd.dim[0] = (int)W->cols; /* C */
    nd.dim[1] = (int)W->rows; /* OC */
    return push(g, nd, W->rows, out);
}

pissa_status pissa__g_lora(pissa__graph *g, int x, int w_res, int A, int B, float scale, float p, int *out) {
    PISSA_TRY(check_value(g, x, "lora"));
    PISSA_TRY(check_param(g, w_res, "lora"));
    PISSA_TRY(check_param(g, A, "lora"));
    PISSA_TRY(check_param(g, B, "lora"));
    const pissa__param *W = param(g, w_res), *pa = param(g, A), *pb = param(g, B);
    int64_t C = g->values[x].cols, OC = W->rows, r = pa->rows;
    if (W->cols != C || pa->cols != C || pb->rows != OC || pb->cols != r)
        return pissa__fail(PISSA_ERR_SHAPE,
                           "lora: shapes disagree: input %lld columns, '%s' (%lld, %lld), '%s' (%lld, %lld), "
                           "'%s' (%lld, %lld)",
                           (long long)C, W->name, (long long)W->rows, (long long)W->cols, pa->name,
                           (long long)pa->rows, (long long)pa->cols, pb->name, (long long)pb->rows,
                           (long long)pb->cols);
    if (W->trainable)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "lora: the residual weight '%s' must be frozen", W->name);
    if (!(p >= 0.0f && p < 1.0f)) return pissa__fail(PISSA_ERR_INVALID_ARG, "lora: dropout %g not in [0, 1)", p);
    pissa__node nd = node(PISSA_OP_LORA);
    nd.in[0] = x;
    nd.par[0] = w_res;
    nd.par[1] = A;
    nd.par[2] = B;
    nd.dim[0] = (int)C;
    nd.dim[1] = (int)OC;
    nd.dim[2] = (int)r;
    nd.f[0] = scale;
    nd.f[1] = p;
    nd.saved_floats = (size_t)g->N * (size_t)r; /* xa, (r, N) */
    return push(g, nd, OC, out);
}

pissa_status pissa__g_rmsnorm(pissa__graph *g, int x, int w, float eps, int *out) {
    PISSA_TRY(check_value(g, x, "rmsnorm"));
    PISSA_TRY(check_param(g, w, "rmsnorm"));
    const pissa__param *W = param(g, w);
    int64_t width = W->rows * W->cols, cols = g->values[x].cols;
    if (cols % width != 0)
        return pissa__fail(PISSA_ERR_SHAPE, "rmsnorm: '%s' has %lld elements, which do not divide its input's %lld "
                           "columns", W->name, (long long)width, (long long)cols);
    pissa__node nd = node(PISSA_OP_RMSNORM);
    nd.in[0] = x;
    nd.par[0] = w;
    nd.dim[0] = (int)width;         /* C' */
    nd.dim[1] = (int)(cols / width); /* groups per row */
    nd.f[0] = eps;
    nd.saved_floats = (size_t)g->N * (size_t)nd.dim[1]; /* rstd of every group */
    return push(g, nd, cols, out);
}

pissa_status pissa__g_bias(pissa__graph *g, int x, int b, int *out) {
    PISSA_TRY(check_value(g, x, "bias"));
    PISSA_TRY(check_param(g, b, "bias"));
    const pissa__param *P = param(g, b);
    if (P->rows * P->cols != g->values[x].cols)
        return pissa__fail(PISSA_ERR_SHAPE, "bias: '%s' has %lld elements but its input has %lld columns", P->name,
                           (long long)(P->rows * P->cols), (long long)g->values[x].cols);
    pissa__node nd = node(PISSA_OP_BIAS);
    nd.in[0] = x;
    nd.par[0] = b;
    nd.dim[0] = (int)g->values[x].cols;
    return push(g, nd, g->values[x].cols, out);
}

pissa_status pissa__g_rope(pissa__graph *g, int x, int n_heads, int head_dim, const float *inv_freq, int *out) {
    PISSA_TRY(check_value(g, x, "rope"));
    if (n_heads <= 0 || head_dim <= 0 || head_dim % 2 || (int64_t)n_heads * head_dim != g->values[x].cols)
        return pissa__fail(PISSA_ERR_SHAPE, "rope: %d heads of %d (even) do not make the %lld input columns",
                           n_heads, head_dim, (long long)g->values[x].cols);
    pissa__node nd = node(PISSA_OP_ROPE);
    nd.in[0] = x;
    nd.dim[0] = n_heads;
    nd.dim[1] = head_dim;
    nd.aux = inv_freq;
    nd.saved_floats = (size_t)g->T * (size_t)head_dim; /* cos (T, hd/2) then sin (T, hd/2) */
    return push(g, nd, g->values[x].cols, out);
}

pissa_status pissa__g_attention(pissa__graph *g, int q, int k, int v, int H, int KV, int head_dim, int window,
                                int *out) {
    PISSA_TRY(check_value(g, q, "attention"));
    PISSA_TRY(check_value(g, k, "attention"));
    PISSA_TRY(check_value(g, v, "attention"));
    if (H <= 0 || KV <= 0 || H % KV || head_dim <= 0 || g->values[q].cols != (int64_t)H * head_dim ||
        g->values[k].cols != (int64_t)KV * head_dim || g->values[v].cols != (int64_t)KV * head_dim)
        return pissa__fail(PISSA_ERR_SHAPE, "attention: q/k/v columns %lld/%lld/%lld do not fit H %d, KV %d, hd %d",
                           (long long)g->values[q].cols, (long long)g->values[k].cols,
                           (long long)g->values[v].cols, H, KV, head_dim);
    pissa__node nd = node(PISSA_OP_ATTENTION);
    nd.in[0] = q;
    nd.in[1] = k;
    nd.in[2] = v;
    nd.dim[0] = H;
    nd.dim[1] = KV;
    nd.dim[2] = head_dim;
    nd.dim[3] = window < 0 ? 0 : window;
    nd.saved_floats = (size_t)g->B * H * (size_t)g->T; /* each query row's log-sum-exp */
    return push(g, nd, g->values[q].cols, out);
}

static pissa_status elementwise(pissa__graph *g, pissa__op op, int a, int b, const char *name, int *out) {
    PISSA_TRY(check_value(g, a, name));
    if (b >= 0) {
        PISSA_TRY(check_value(g, b, name));
        if (g->values[a].cols != g->values[b].cols)
            return pissa__fail(PISSA_ERR_SHAPE, "%s: inputs have %lld and %lld columns", name,
                               (long long)g->values[a].cols, (long long)g->values[b].cols);
    }
    pissa__node nd = node(op);
    nd.in[0] = a;
    nd.in[1] = b;
    return push(g, nd, g->values[a].cols, out);
}

pissa_status pissa__g_silu(pissa__graph *g, int x, int *out) {
    return elementwise(g, PISSA_OP_SILU, x, -1, "silu", out);
}
pissa_status pissa__g_mul(pissa__graph *g, int a, int b, int *out) {
    return elementwise(g, PISSA_OP_MUL, a, b, "mul", out);
}
pissa_status pissa__g_add(pissa__graph *g, int a, int b, int *out) {
    return elementwise(g, PISSA_OP_ADD, a, b, "add", out);
}
pissa_status pissa__g_swiglu(pissa__graph *g, int gate, int up, int *out) {
    return elementwise(g, PISSA_OP_SWIGLU, gate, up, "swiglu", out);
}

pissa_status pissa__g_cross_entropy(pissa__graph *g, int logits) {
    PISSA_TRY(check_value(g, logits, "cross_entropy"));
    pissa__node nd = node(PISSA_OP_CROSS_ENTROPY);
    nd.in[0] = logits;
    nd.dim[0] = (int)g->values[logits].cols; /* V */
    nd.saved_floats = (size_t)g->N;          /* lse */
    return push(g, nd, 0, NULL);
}

pissa_status pissa__graph_segment_begin(pissa__graph *g) {
    if (g->planned) return pissa__fail(PISSA_ERR_INVALID_ARG, "graph: segment begun after planning");
    if (g->open_seg >= 0) return pissa__fail(PISSA_ERR_INVALID_ARG, "graph: segment %d is still open", g->open_seg);
    if (g->n_segs == g->cap_segs) {
        int cap = g->cap_segs ? 2 * g->cap_segs : 16;
        pissa__segment *sg = realloc(g->segs, (size_t)cap * sizeof *sg);
        if (!sg) return pissa__fail(PISSA_ERR_NOMEM, "out of memory for graph segments");
        g->segs = sg;
        g->cap_segs = cap;
    }
    g->segs[g->n_segs] = (pissa__segment){.first = g->n_nodes, .last = g->n_nodes - 1};
    g->open_seg = g->n_segs++;
    return PISSA_OK;
}

pissa_status pissa__graph_segment_end(pissa__graph *g) {
    if (g->open_seg < 0) return pissa__fail(PISSA_ERR_INVALID_ARG, "graph: no segment to end");
    pissa__segment *sg = &g->segs[g->open_seg];
    sg->last = g->n_nodes - 1;
    g->open_seg = -1;
    if (sg->last < sg->first) return pissa__fail(PISSA_ERR_INVALID_ARG, "graph: segment %d is empty", g->n_segs - 1);
    return PISSA_OK;
}

/* ---- planning ---- */

static size_t node_scratch(const pissa__graph *g, const pissa__node *nd) {
    switch (nd->op) {
    case PISSA_OP_MATMUL: return pissa__frozen_scratch_floats(param(g, nd->par[0])->q.type, g->threads);
    case PISSA_OP_LORA:
        return pissa__lora_scratch_floats(g->N, nd->dim[0], nd->dim[1], nd->dim[2], nd->f[1] > 0.0f,
                                          param(g, nd->par[0])->q.type, g->threads);
    case PISSA_OP_ATTENTION: return pissa__attention_scratch_floats(g->T, g->threads);
    default: return 0;
    }
}

/* Activation gradients share memory: the gradient of value v lives, in backward order, from the backward of its
 * last consumer (the first to add into it, which zeroes it first) to the backward of its producer (the last to
 * read it). Values whose lifetimes do not overlap get overlapping offsets (first fit in order of start), so the
 * arena holds about one layer's gradients instead of all of them. Sets every goff, zero_at and overwritten, every
 * node's fresh, and *TOTAL. */
typedef struct grad_span {
    size_t off, size;
    int end; /* last backward step (node index, counted from the last node) */
} grad_span;

/* Input gradients whose kernel can overwrite them (ops.h `fresh`), by slot. */
static unsigned fresh_slots(pissa__op op) {
    switch (op) {
    case PISSA_OP_ATTENTION: return 7u;
    case PISSA_OP_ADD:
    case PISSA_OP_SWIGLU: return 3u;
    case PISSA_OP_MATMUL:
    case PISSA_OP_LORA:
    case PISSA_OP_RMSNORM:
    case PISSA_OP_BIAS:
    case PISSA_OP_ROPE:
    case PISSA_OP_CROSS_ENTROPY: return 1u;
    default: return 0u; /* embedding (no value input), silu, mul */
    }
}

static pissa_status plan_gradients(pissa__graph *g, size_t *total) {
    int nv = g->n_values, nn = g->n_nodes;
    size_t cap = (size_t)(nv ? nv : 1);
    int *last_use = malloc(cap * sizeof *last_use), *producer = malloc(cap * sizeof *producer);
    grad_span *live = malloc(cap * sizeof *live);
    if (!last_use || !producer || !live) {
        free(last_use), free(producer), free(live);
        return pissa__fail(PISSA_ERR_NOMEM, "out of memory planning a graph");
    }
    for (int v = 0; v < nv; v++) {
        last_use[v] = producer[v] = g->values[v].zero_at = -1;
        g->values[v].overwritten = 0;
    }
    for (int i = 0; i < nn; i++) {
        const pissa__node *nd = &g->nodes[i];
        if (nd->out >= 0) producer[nd->out] = i;
        for (int k = 0; k < 3; k++)
            if (nd->in[k] >= 0) last_use[nd->in[k]] = i;
    }
    size_t top = 0;
    int n_live = 0;
    /* values in order of the start of their lifetime: backward visits nodes from the last, so node i starts the
     * inputs it is the last consumer of, and its output if nothing consumes it */
    for (int i = nn - 1; i >= 0; i--)
        for (int k = 0; k < 4; k++) {
            int v = k < 3 ? g->nodes[i].in[k] : g->nodes[i].out;
            if (v < 0 || g->values[v].zero_at >= 0) continue; /* none, or placed already (read twice by node i) */
            pissa__value *val = &g->values[v];
            int start = last_use[v] >= 0 ? last_use[v] : producer[v];
            if (!val->requires_grad || start != i) continue;
            size_t size = (size_t)g->N * (size_t)val->cols;
            int end = producer[v] >= 0 ? producer[v] : 0;
            int n = 0; /* drop spans that ended before this one starts (a larger node index is earlier) */
            for (int k = 0; k < n_live; k++)
                if (live[k].end <= i) live[n++] = live[k];
            n_live = n;
            size_t off = 0; /* first fit among the live spans, kept sorted by offset */
            int pos = 0;
            for (; pos < n_live; pos++) {
                if (live[pos].off >= off + size) break;
                if (live[pos].off + live[pos].size > off) off = live[pos].off + live[pos].size;
            }
            memmove(live + pos + 1, live + pos, (size_t)(n_live - pos) * sizeof *live);
            live[pos] = (grad_span){off, size, end};
            n_live++;
            val->goff = off;
            val->zero_at = i;
            if (off + size > top) top = off + size;
        }
    /* The first writer overwrites instead of adding where its kernel can (the `fresh` bits of ops.h): slot k of
     * node i when input k starts its lifetime at i and is not also another slot's input. */
    for (int i = 0; i < nn; i++) {
        pissa__node *nd = &g->nodes[i];
        unsigned slots = fresh_slots(nd->op);
        nd->fresh = 0;
        for (int k = 0; k < 3; k++) {
            int v = nd->in[k];
            if (!(slots >> k & 1) || v < 0 || g->values[v].zero_at != i) continue;
            int shared = 0;
            for (int k2 = 0; k2 < 3; k2++) shared |= k2 != k && nd->in[k2] == v;
            if (shared) continue;
            nd->fresh |= 1u << k;
            g->values[v].overwritten = 1;
        }
    }
    free(last_use);
    free(producer);
    free(live);
    *total = top;
    return PISSA_OK;
}

/* With checkpointing: does node ND's saved buffer go in the shared region? Those its forward writes do; RoPE's tables
 * are written once, when planning, so they keep their own slice. */
static int saved_in_region(const pissa__graph *g, const pissa__node *nd) {
    return g->checkpoint && nd->seg >= 0 && nd->saved_floats && nd->op != PISSA_OP_ROPE;
}

/* Activation offsets. Without checkpointing every value and saved buffer has its own slice. With it, INNER[v] = 1
 * for a value made inside a segment and read only there: those and the segment's saved buffers are laid out from
 * the start of one region after the own slices, each segment over the same floats, and the region is as large as
 * the largest segment. Recomputation rewrites values and saved buffers only, never gradients, so the gradient plan
 * (liveness in backward order, first writers overwriting) holds unchanged. Returns the arena's floats. */
static pissa_status plan_activations(pissa__graph *g, size_t *total) {
    size_t N = (size_t)g->N, act = 0;
    int nv = g->n_values;
    uint8_t *inner = calloc((size_t)(nv ? nv : 1), 1);
    int *made_in = malloc((size_t)(nv ? nv : 1) * sizeof *made_in);
    if (!inner || !made_in) {
        free(inner), free(made_in);
        return pissa__fail(PISSA_ERR_NOMEM, "out of memory planning a graph");
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const pissa__node *nd = &g->nodes[i];
        if (nd->out < 0) continue;
        made_in[nd->out] = nd->seg;
        inner[nd->out] = g->checkpoint && nd->seg >= 0;
    }
    for (int i = 0; i < g->n_nodes; i++) /* a value read outside the segment that made it crosses an edge */
        for (int k = 0; k < 3; k++) {
            int v = g->nodes[i].in[k];
            if (v >= 0 && made_in[v] != g->nodes[i].seg) inner[v] = 0;
        }
    for (int v = 0; v < nv; v++)
        if (!inner[v]) {
            g->values[v].off = act;
            act += N * (size_t)g->values[v].cols;
        }
    for (int i = 0; i < g->n_nodes; i++) {
        pissa__node *nd = &g->nodes[i];
        if (saved_in_region(g, nd)) continue;
        nd->saved_off = act;
        act += nd->saved_floats;
    }
    size_t region = 0;
    for (int s = 0; s < g->n_segs && g->checkpoint; s++) {
        size_t used = 0;
        for (int i = g->segs[s].first; i <= g->segs[s].last; i++) {
            pissa__node *nd = &g->nodes[i];
            if (nd->out >= 0 && inner[nd->out]) {
                g->values[nd->out].off = act + used;
                used += N * (size_t)g->values[nd->out].cols;
            }
            if (saved_in_region(g, nd)) {
                nd->saved_off = act + used;
                used += nd->saved_floats;
            }
        }
        if (used > region) region = used;
    }
    free(inner);
    free(made_in);
    g->region_floats = region;
    *total = act + region;
    return PISSA_OK;
}

pissa_status pissa__graph_plan(pissa__graph *g) {
    if (g->planned) return PISSA_OK;
    if (g->open_seg >= 0) return pissa__fail(PISSA_ERR_INVALID_ARG, "graph: segment %d is still open", g->open_seg);
    size_t N = (size_t)g->N;
    /* sizes first ... */
    size_t act = 0, grad = 0, scratch = 0, masks = 0;
    g->threads = pissa__par_threads(); /* per-thread scratch; later runs use at most this many */
    PISSA_TRY(plan_activations(g, &act));
    PISSA_TRY(plan_gradients(g, &grad));
    for (int i = 0; i < g->n_nodes; i++) {
        pissa__node *nd = &g->nodes[i];
        size_t s = node_scratch(g, nd);
        if (s > scratch) scratch = s;
        if (nd->op == PISSA_OP_LORA && nd->f[1] > 0.0f) {
            nd->mask_off = masks;
            masks += N * (size_t)nd->dim[0];
        }
    }
    /* ... then one allocation per role */
    g->act = pissa__alloc(act ? act : 1, sizeof(float));
    g->grad = grad ? pissa__alloc(grad, sizeof(float)) : NULL;
    g->scratch = scratch ? pissa__alloc(scratch, sizeof(float)) : NULL;
    g->masks = masks ? pissa__alloc(masks, 1) : NULL;
    g->ints = pissa__calloc(3 * N, sizeof(int32_t));
    if (!g->act || (grad && !g->grad) || (scratch && !g->scratch) || (masks && !g->masks) || !g->ints)
        return pissa__fail(PISSA_ERR_NOMEM, "out of memory planning a (%d, %d) graph: %zu + %zu + %zu floats", g->B,
                           g->T, act, grad, scratch);
    g->act_floats = act;
    g->grad_floats = grad;
    g->scratch_floats = scratch;
    g->mask_bytes = masks;
    g->ids = g->ints;
    g->targets = g->ints + N;
    g->pos = g->ints + 2 * N;
    for (size_t i = 0; i < N; i++) g->targets[i] = PISSA_IGNORE_INDEX;
    for (int i = 0; i < g->n_values; i++) {
        pissa__value *v = &g->values[i];
        v->data = g->act + v->off;
        v->grad = v->requires_grad ? g->grad + v->goff : NULL;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        pissa__node *nd = &g->nodes[i];
        nd->saved = nd->saved_floats ? g->act + nd->saved_off : NULL;
        nd->mask = (nd->op == PISSA_OP_LORA && nd->f[1] > 0.0f) ? g->masks + nd->mask_off : NULL;
        if (nd->op == PISSA_OP_ROPE) /* positions 0..T-1 are the same for every step: tables once */
            pissa__rope_tables(nd->saved, nd->saved + (size_t)g->T * (nd->dim[1] / 2), NULL, 0, g->T,
                               nd->dim[1] / 2, nd->aux);
    }
    g->planned = 1;
    return PISSA_OK;
}

size_t pissa__graph_bytes(const pissa__graph *g) {
    return (g->act_floats + g->grad_floats + g->scratch_floats) * sizeof(float) + g->mask_bytes +
           3 * (size_t)g->N * sizeof(int32_t);
}

/* ---- forward and backward, side by side ---- */

static float *vdata(const pissa__graph *g, int v) { return g->values[v].data; }
static float *vgrad(const pissa__graph *g, int v) { return v >= 0 ? g->values[v].grad : NULL; }
static float *pdata(const pissa__graph *g, int p) { return g->params->p[p].data; }
static float *pgrad(const pissa__graph *g, int p) { return g->params->p[p].grad; }
static const int32_t *positions(const pissa__graph *g) { return g->packed ? g->pos : NULL; }

/* DRAW: lora nodes draw fresh dropout masks (in training); else they reuse the masks drawn last (recomputation). */
static void forward_node(pissa__graph *g, pissa__node *nd, int draw) {
    int N = g->N;
    float *out = nd->out >= 0 ? vdata(g, nd->out) : NULL;
    size_t n = nd->out >= 0 ? (size_t)N * (size_t)g->values[nd->out].cols : 0;
    switch (nd->op) {
    case PISSA_OP_EMBEDDING:
        if (pdata(g, nd->par[0])) pissa__embedding_forward(out, g->ids, pdata(g, nd->par[0]), N, nd->dim[1]);
        else pissa__embedding_forward_q(out, g->ids, &g->params->p[nd->par[0]].q, N);
        break;
    case PISSA_OP_MATMUL:
        pissa__frozen_forward(out, g->scratch, g->threads, vdata(g, nd->in[0]), &g->params->p[nd->par[0]].q, N);
        break;
    case PISSA_OP_LORA: {
        uint8_t *mask = nd->mask && g->training ? nd->mask : NULL;
        if (mask && draw) { /* this graph's rows of the batch only: the others' draws are skipped (mask_rows_*) */
            uint64_t C = (uint64_t)nd->dim[0];
            pissa__rng_skip(&g->rng, (uint64_t)g->mask_rows_before * C);
            pissa__dropout_mask(mask, (size_t)N * nd->dim[0], nd->f[1], &g->rng);
            pissa__rng_skip(&g->rng, (uint64_t)g->mask_rows_after * C);
        }
        pissa__lora_forward(out, nd->saved, g->scratch, g->threads, vdata(g, nd->in[0]), mask, nd->f[1],
                            &g->params->p[nd->par[0]].q, pdata(g, nd->par[1]), pdata(g, nd->par[2]), nd->f[0], N,
                            nd->dim[0], nd->dim[1], nd->dim[2]);
        break;
    }
    case PISSA_OP_RMSNORM:
        pissa__rmsnorm_forward(out, nd->saved, vdata(g, nd->in[0]), pdata(g, nd->par[0]), nd->f[0], N * nd->dim[1],
                               nd->dim[0]);
        break;
    case PISSA_OP_BIAS: pissa__bias_forward(out, vdata(g, nd->in[0]), pdata(g, nd->par[0]), N, nd->dim[0]); break;
    case PISSA_OP_ROPE: {
        const float *cos_tab = nd->saved, *sin_tab = nd->saved + (size_t)g->T * (nd->dim[1] / 2);
        pissa__rope_forward(out, vdata(g, nd->in[0]), cos_tab, sin_tab, positions(g), g->B, g->T, nd->dim[0],
                            nd->dim[1]);
        break;
    }
    case PISSA_OP_ATTENTION:
        pissa__attention_forward(out, nd->saved, g->scratch, g->threads, vdata(g, nd->in[0]), vdata(g, nd->in[1]),
                                 vdata(g, nd->in[2]), positions(g), g->B, g->T, nd->dim[0], nd->dim[1], nd->dim[2],
                                 nd->dim[3]);
        break;
    case PISSA_OP_SILU: pissa__silu_forward(out, vdata(g, nd->in[0]), n); break;
    case PISSA_OP_MUL: pissa__mul_forward(out, vdata(g, nd->in[0]), vdata(g, nd->in[1]), n); break;
    case PISSA_OP_ADD: pissa__add_forward(out, vdata(g, nd->in[0]), vdata(g, nd->in[1]), n); break;
    case PISSA_OP_SWIGLU: pissa__swiglu_forward(out, vdata(g, nd->in[0]), vdata(g, nd->in[1]), n); break;
    case PISSA_OP_CROSS_ENTROPY:
        g->count = pissa__cross_entropy_forward(&g->loss, nd->saved, vdata(g, nd->in[0]), g->targets, N, nd->dim[0]);
        break;
    }
}

static void backward_node(pissa__graph *g, pissa__node *nd, float dloss) {
    int N = g->N;
    /* The loss node seeds the reverse pass; any other node whose output needs no gradient has nothing to do. */
    if (nd->op != PISSA_OP_CROSS_ENTROPY && !g->values[nd->out].requires_grad) return;
    const float *dout = nd->out >= 0 ? vgrad(g, nd->out) : NULL;
    size_t n = nd->out >= 0 ? (size_t)N * (size_t)g->values[nd->out].cols : 0;
    switch (nd->op) {
    case PISSA_OP_EMBEDDING: pissa__embedding_backward(pgrad(g, nd->par[0]), dout, g->ids, N, nd->dim[1]); break;
    case PISSA_OP_MATMUL:
        if (pdata(g, nd->par[0]))
            pissa__matmul_backward(vgrad(g, nd->in[0]), pgrad(g, nd->par[0]), dout, vdata(g, nd->in[0]),
                                   pdata(g, nd->par[0]), N, nd->dim[0], nd->dim[1], nd->fresh);
        else if (vgrad(g, nd->in[0])) /* a frozen weight in another format: the input's gradient only */
            pissa__frozen_backward(vgrad(g, nd->in[0]), g->scratch, g->threads, dout, &g->params->p[nd->par[0]].q, N,
                                   nd->fresh);
        break;
    case PISSA_OP_LORA:
        pissa__lora_backward(vgrad(g, nd->in[0]), pgrad(g, nd->par[1]), pgrad(g, nd->par[2]), g->scratch, g->threads,
                             dout, vdata(g, nd->in[0]), g->training ? nd->mask : NULL, nd->f[1],
                             &g->params->p[nd->par[0]].q,
                             pdata(g, nd->par[1]), pdata(g, nd->par[2]), nd->saved, nd->f[0], N, nd->dim[0],
                             nd->dim[1], nd->dim[2], nd->fresh);
        break;
    case PISSA_OP_RMSNORM:
        pissa__rmsnorm_backward(vgrad(g, nd->in[0]), pgrad(g, nd->par[0]), dout, vdata(g, nd->in[0]),
                                pdata(g, nd->par[0]), nd->saved, N * nd->dim[1], nd->dim[0], nd->fresh);
        break;
    case PISSA_OP_BIAS:
        pissa__bias_backward(vgrad(g, nd->in[0]), pgrad(g, nd->par[0]), dout, N, nd->dim[0], nd->fresh);
        break;
    case PISSA_OP_ROPE: {
        const float *cos_tab = nd->saved, *sin_tab = nd->saved + (size_t)g->T * (nd->dim[1] / 2);
        pissa__rope_backward(vgrad(g, nd->in[0]), dout, cos_tab, sin_tab, positions(g), g->B, g->T, nd->dim[0],
                             nd->dim[1], nd->fresh);
        break;
    }
    case PISSA_OP_ATTENTION:
        pissa__attention_backward(vgrad(g, nd->in[0]), vgrad(g, nd->in[1]), vgrad(g, nd->in[2]), g->scratch,
                                  g->threads, dout, vdata(g, nd->in[0]), vdata(g, nd->in[1]), vdata(g, nd->in[2]),
                                  nd->saved, positions(g), g->B, g->T, nd->dim[0], nd->dim[1], nd->dim[2], nd->dim[3],
                                  nd->fresh);
        break;
    case PISSA_OP_SILU: pissa__silu_backward(vgrad(g, nd->in[0]), dout, vdata(g, nd->in[0]), n); break;
    case PISSA_OP_MUL:
        pissa__mul_backward(vgrad(g, nd->in[0]), vgrad(g, nd->in[1]), dout, vdata(g, nd->in[0]),
                            vdata(g, nd->in[1]), n);
        break;
    case PISSA_OP_ADD: pissa__add_backward(vgrad(g, nd->in[0]), vgrad(g, nd->in[1]), dout, n, nd->fresh); break;
    case PISSA_OP_SWIGLU:
        pissa__swiglu_backward(vgrad(g, nd->in[0]), vgrad(g, nd->in[1]), dout, vdata(g, nd->in[0]),
                               vdata(g, nd->in[1]), n, nd->fresh);
        break;
    case PISSA_OP_CROSS_ENTROPY:
        pissa__cross_entropy_backward(vgrad(g, nd->in[0]), dloss, vdata(g, nd->in[0]), g->targets, nd->saved, N,
                                      nd->dim[0], nd->fresh);
        break;
    }
}

/* BLAS stays single-threaded through a pass: the kernels split their work themselves (parallel.h). */
void pissa__graph_forward(pissa__graph *g, int n_nodes) {
    if (n_nodes < 0 || n_nodes > g->n_nodes) n_nodes = g->n_nodes;
    pissa__blas_serial_begin();
    for (int i = 0; i < n_nodes; i++) {
        pissa__node *nd = &g->nodes[i];
        forward_node(g, nd, 1);
        if (nd->seg >= 0) g->resident = i == g->segs[nd->seg].last ? nd->seg : -1; /* the region is being written */
    }
    pissa__blas_serial_end();
}

void pissa__graph_backward(pissa__graph *g, float dloss) {
    pissa__blas_serial_begin();
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const pissa__node *nd = &g->nodes[i];
        /* checkpointing: a segment's inner values are rebuilt before the first of its backward steps that has work
         * (its last node's, unless no gradient flows there: then a segment without any is never recomputed) */
        int works = nd->out < 0 || g->values[nd->out].requires_grad;
        if (g->checkpoint && nd->seg >= 0 && nd->seg != g->resident && works) {
            const pissa__segment *sg = &g->segs[nd->seg];
            for (int j = sg->first; j <= sg->last; j++) forward_node(g, &g->nodes[j], 0);
            g->resident = nd->seg;
        }
        for (int k = 0; k < 4; k++) { /* gradients whose lifetime starts here (inputs, or an unread output) */
            int v = k < 3 ? nd->in[k] : nd->out;
            if (v >= 0 && g->values[v].zero_at == i && !g->values[v].overwritten)
                memset(g->values[v].grad, 0, (size_t)g->N * (size_t)g->values[v].cols * sizeof(float));
        }
        backward_node(g, &g->nodes[i], dloss);
    }
    pissa__blas_serial_end();
}
