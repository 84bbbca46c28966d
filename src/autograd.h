/* Internal: a small reverse-mode autograd engine over the closed set of kernels in ops.h.
 *
 * A graph is a static tape built once for one batch shape (B, T): every activation is a (N, cols) matrix with
 * N = B·T token rows, every node one op of ops.h. Building only records nodes; pissa__graph_plan then sizes
 * every buffer and makes one allocation per role (activations + saved values, activation gradients, scratch,
 * dropout masks), so forward and backward allocate nothing. Parameters live outside the graph, in a
 * pissa__params set shared by the graphs of every shape: each has a `trainable` flag, and only trainable
 * parameters get a gradient (one allocation for all of them). Frozen parameters are read in place (for a
 * model, F32 straight from the file mapping). See docs/autograd-ops.md, "The engine".
 *
 * Activation checkpointing: the nodes built between pissa__graph_segment_begin and _end form a segment (a
 * transformer layer). With g->checkpoint set before planning, every value made and read only inside one segment, and
 * every saved buffer its forward writes, lives in one region shared by all segments (sized by the largest); values
 * that cross a segment's edge (its input and output, the embedding, the tail) keep their own slices. Forward runs as
 * usual, each segment overwriting the region; backward, at each segment from the last, first re-runs that segment's
 * forward (the same kernels on the same inputs, reusing the dropout masks forward drew) and then its backward, so the
 * gradients are bit-identical to those of the plain plan for about one more forward. */
#ifndef PISSA_AUTOGRAD_H
#define PISSA_AUTOGRAD_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "quant.h"

/* Op codes. Pinned: never renumbered, only appended. */
typedef enum pissa__op {
    PISSA_OP_EMBEDDING = 0,
    PISSA_OP_MATMUL = 1,
    PISSA_OP_LORA = 2,
    PISSA_OP_RMSNORM = 3,
    PISSA_OP_ROPE = 4,
    PISSA_OP_ATTENTION = 5,
    PISSA_OP_SILU = 6,
    PISSA_OP_MUL = 7,
    PISSA_OP_ADD = 8,
    PISSA_OP_SWIGLU = 9,
    PISSA_OP_CROSS_ENTROPY = 10,
    PISSA_OP_BIAS = 11,
} pissa__op;

/* ---- parameters ---- */

typedef struct pissa__param {
    const char *name; /* borrowed, for messages */
    float *data;      /* (numel) borrowed: mapped or owned by the caller (the model); NULL when kept in another format */
    pissa__qweight q; /* the same as a frozen (rows, cols) matrix in its format (a borrowed view: F32 wraps DATA) */
    int64_t rows, cols;
    int trainable;
    float *grad;      /* (numel) inside the set's gradient arena; NULL when frozen or before planning */
} pissa__param;

typedef struct pissa__params {
    pissa__param *p; /* (n) */
    size_t n, cap;
    float *grad_arena; /* one allocation holding the gradients of every trainable parameter */
    size_t grad_floats;
} pissa__params;

/* Appends a (rows, cols) float32 parameter; *id receives its index. Invalidates gradients until the next plan. */
pissa_status pissa__params_add(pissa__params *ps, const char *name, float *data, int64_t rows, int64_t cols,
                               int trainable, int *id);
/* Appends a frozen matrix kept in any format (Q is viewed, not copied: it must outlive the set). A float32 Q becomes
 * an ordinary frozen parameter. The embedding, matmul and lora ops read the other formats; the rest need float32. */
pissa_status pissa__params_add_frozen(pissa__params *ps, const char *name, const pissa__qweight *q, int *id);
/* Points frozen parameter ID at Q instead (the same shape; viewed, not copied): a PiSSA residual in place of its base. */
void pissa__params_rebind(pissa__params *ps, int id, const pissa__qweight *q);
/* Allocates (zeroed) gradients for the trainable parameters, replacing earlier ones. */
pissa_status pissa__params_plan(pissa__params *ps);
void pissa__params_zero_grad(pissa__params *ps);
void pissa__params_free(pissa__params *ps); /* zeroes *ps; the parameters' data is not touched */

/* ---- graphs ---- */

typedef struct pissa__value {
    int64_t cols;      /* the value is (N, cols) */
    int requires_grad; /* on a path from a trainable parameter */
    size_t off, goff;  /* offsets (floats) in the activation and gradient arenas (gradients share memory) */
    int zero_at;       /* the gradient's lifetime starts at this node's backward (-1: no gradient) */
    int overwritten;   /* ... whose kernel overwrites it (ops.h `fresh`); otherwise it is zeroed just before */
    float *data, *grad;
} pissa__value;

typedef struct pissa__node {
    pissa__op op;
    int out;          /* value id; -1 for cross-entropy (its output is the graph's loss) */
    int in[3];        /* value ids, -1 when unused */
    int par[3];       /* parameter ids, -1 when unused */
    int dim[5];       /* op-specific: see the constructors */
    float f[2];       /* eps; lora scale and dropout p */
    const float *aux; /* rope: the inverse frequencies (hd/2), borrowed from the caller */
    size_t saved_floats, saved_off;
    float *saved;     /* xa, rstd, rope cos|sin tables, att, lse */
    size_t mask_off;
    uint8_t *mask;    /* lora dropout mask (N, C), or NULL */
    unsigned fresh;   /* input gradients this node's backward overwrites (bit k: in[k]); set by planning */
    int seg;          /* segment index, or -1 outside every segment */
} pissa__node;

typedef struct pissa__segment {
    int first, last; /* node indices, inclusive */
} pissa__segment;

typedef struct pissa__graph {
    pissa__params *params; /* borrowed */
    int B, T, N;
    pissa__node *nodes;
    int n_nodes, cap_nodes;
    pissa__value *values;
    int n_values, cap_values;
    pissa__segment *segs;
    int n_segs, cap_segs;
    int open_seg;      /* the segment being built, or -1 */
    int checkpoint;    /* set before planning: share one region among the segments' inner values (see above) */
    int resident;      /* with checkpoint: the segment whose inner values the region holds complete, or -1 */
    size_t region_floats; /* with checkpoint: the shared region (the largest segment's inner values and saved) */
    int planned;
    /* arenas, one allocation per role */
    float *act;        /* values and saved buffers */
    float *grad;       /* gradients of the values that require one */
    float *scratch;    /* largest scratch of any op */
    uint8_t *masks;    /* dropout masks */
    int32_t *ints;     /* ids (N), targets (N), positions (N) */
    size_t act_floats, grad_floats, scratch_floats, mask_bytes;
    int threads;       /* kernel threads the scratch was planned for */
    int32_t *ids;      /* (N) token ids, written by the caller before forward */
    int32_t *targets;  /* (N) cross-entropy targets (already shifted), −100 ignored */
    int32_t *pos;      /* (N) packed rows: each token's position in its own sequence (ops.h), written by the caller */
    int packed;        /* rope and attention read pos (else positions 0..T-1 in every row) */
    int training;      /* draw dropout masks in forward */
    pissa_rng rng;
    /* Token rows of a larger batch before and after this graph's N rows (0 and 0 normally). With data parallelism
     * each process runs a slice of the batch; a lora node skips the mask draws of the other slices' rows, so every
     * row gets the mask it would get in the whole batch: masks do not depend on how the batch is split. */
    int64_t mask_rows_before, mask_rows_after;
    float loss;        /* after forward with a cross-entropy node */
    int count;         /* counted targets */
} pissa__graph;

pissa_status pissa__graph_create(pissa__params *ps, int B, int T, pissa__graph **out);
void pissa__graph_free(pissa__graph *g); /* NULL is a no-op */

/* Constructors: check shapes, append a node, return its output value id in *out. Every value is (N, cols). */
pissa_status pissa__g_embedding(pissa__graph *g, int wte, int *out);                 /* wte (V, C) param */
pissa_status pissa__g_matmul(pissa__graph *g, int x, int w, int *out);               /* w (OC, C) param */
/* lora: w_res (OC, C) must be frozen; A (r, C), B (OC, r); dropout p in [0, 1) on the adapter branch. */
pissa_status pissa__g_lora(pissa__graph *g, int x, int w_res, int A, int B, float scale, float p, int *out);
/* w (1, C') param with C' dividing C: each row's C columns are normalised in groups of C' (C' = C: the usual norm;
 * C' = head_dim: Qwen3's per-head norm of q and k). */
pissa_status pissa__g_rmsnorm(pissa__graph *g, int x, int w, float eps, int *out);
pissa_status pissa__g_bias(pissa__graph *g, int x, int b, int *out);                  /* b (1, C) param */
/* INV_FREQ (head_dim/2) is borrowed: it must outlive the graph. Positions: 0..T-1 in every row, or g->pos when
 * g->packed. */
pissa_status pissa__g_rope(pissa__graph *g, int x, int n_heads, int head_dim, const float *inv_freq, int *out);
/* WINDOW: sliding window (keys i − W < j <= i), 0 for full causal attention; with g->packed, each query sees only
 * the keys of its own packed sequence (ops.h). */
pissa_status pissa__g_attention(pissa__graph *g, int q, int k, int v, int H, int KV, int head_dim, int window,
                                int *out);
pissa_status pissa__g_silu(pissa__graph *g, int x, int *out);
pissa_status pissa__g_mul(pissa__graph *g, int a, int b, int *out);
pissa_status pissa__g_add(pissa__graph *g, int a, int b, int *out);
pissa_status pissa__g_swiglu(pissa__graph *g, int gate, int up, int *out);
/* The loss node: mean cross-entropy of LOGITS (N, V) against g->targets. Must be the last node. */
pissa_status pissa__g_cross_entropy(pissa__graph *g, int logits);

/* Nodes added from segment_begin to segment_end form one segment (contiguous, not nested, not empty). A segment is
 * a unit of recomputation: with g->checkpoint, its inner values are valid only while it is g->resident. */
pissa_status pissa__graph_segment_begin(pissa__graph *g);
pissa_status pissa__graph_segment_end(pissa__graph *g);

/* Sizes and allocates every buffer; call once after the last constructor (and after setting g->checkpoint). */
pissa_status pissa__graph_plan(pissa__graph *g);
/* Runs the first N_NODES nodes (all with n_nodes < 0). With g->training, lora nodes draw fresh dropout masks. */
void pissa__graph_forward(pissa__graph *g, int n_nodes);
/* Reverse pass after a full forward: zeroes the activation gradients, seeds the loss with DLOSS and adds into
 * the gradients of the trainable parameters. With g->checkpoint it recomputes each segment's forward first (masks
 * reused, never drawn; the parameters must not have changed since forward). */
void pissa__graph_backward(pissa__graph *g, float dloss);
/* Bytes held by the graph's arenas (constant after planning: a step allocates nothing). */
size_t pissa__graph_bytes(const pissa__graph *g);

#endif
