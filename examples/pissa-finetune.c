/* pissa-finetune: fine-tunes PiSSA or LoRA adapters of a Llama checkpoint (or, with --method full, all of its
 * weights) on a data set with the library's trainer (include/pissa/train.h). OUT becomes a PEFT adapter folder;
 * for the PiSSA methods it also holds the residual model and OUT/pissa_init, as pissa-init writes them, so OUT is
 * usable on its own; with --method full OUT is a Hugging Face checkpoint. OUT/log.csv has every update's loss and
 * every evaluation; OUT/state/ the training state that --resume continues exactly.
 *
 * Under mpirun (when libpissa has MPI) the processes train one model together: see "several processes" below and
 * docs/distributed.md. */
#define _GNU_SOURCE /* sched_getaffinity */
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#ifdef PISSA_HAVE_MPI
#include <mpi.h>
#endif

/* In parts: C99 promises string literals of 4095 bytes only. */
static const char *const usage[] = {
    "usage: pissa-finetune --model PATH --data FILE --out DIR (--steps N | --epochs E) [options]\n"
    "Trains adapters on a data set; writes OUT as a PEFT adapter folder (plus, for PiSSA, the residual model\n"
    "OUT/config.json + OUT/model.safetensors and the initial adapter OUT/pissa_init), OUT/log.csv and OUT/state/.\n"
    "With --method full every weight is trained and OUT is a Hugging Face checkpoint (config.json +\n"
    "model.safetensors, float32).\n"
    "\n"
    "  --model PATH          Hugging Face folder or llama2.c checkpoint (.bin)\n"
    "  --data FILE           JSONL in any of TRL's formats, one per line: {\"messages\": [...]} (loss on the\n"
    "                        assistant turns), {\"prompt\", \"completion\"} (loss on the completion), {\"text\"},\n"
    "                        {\"input_ids\", \"labels\"}; or plain text, cut into rows of --seq tokens (docs/data.md)\n"
    "  --tokenizer T         llama2.c tokenizer.bin, tokenizer.json, or a folder holding tokenizer.json (default:\n"
    "                        the --model folder's tokenizer.json, when it has one)\n"
    "  --data-format F       auto (JSONL when the first line is a JSON object, else text), jsonl or text\n"
    "  --chat-template FILE  a Jinja chat template instead of the tokenizer's\n"
    "  --all-tokens          every token of a row is a target (TRL's assistant_only_loss and completion_only_loss\n"
    "                        off)\n"
    "  --pack                pack rows into rows of --seq tokens (TRL's padding-free packing: attention and loss\n"
    "                        never cross from one packed row into the next)\n",
    "  --out DIR             output folder (created)\n"
    "  --adapter DIR         continue training this PEFT adapter (instead of --method/--rank/--alpha/--target)\n"
    "  --method M            pissa, pissa_niter_N, lora or gaussian (default pissa_niter_4), or full: every\n"
    "                        weight trainable (4x the model in float32: weights, gradients, 2 AdamW buffers)\n"
    "  --rank R              adapter rank (default 8)\n"
    "  --alpha A             lora_alpha (default: R)\n"
    "  --rslora              scale alpha/sqrt(r)\n"
    "  --target LIST         q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj or all-linear\n"
    "                        (default q_proj,v_proj)\n"
    "  --dropout P           lora_dropout (default 0)\n"
    "  --base-dtype T        format of the frozen projections in memory: f32, bf16, f16, nf4 (bitsandbytes NF4,\n"
    "                        blocks of 64) or int8 (per-row absmax); default: as the checkpoint stores them.\n"
    "                        LoRA on nf4 is QLoRA; the PiSSA methods on nf4/int8 are QPiSSA\n"
    "  --quantize Q          nf4 or int8: the same as --base-dtype Q (pissa-init's spelling)\n"
    "  --qiter T             QPiSSA's alternating rounds on an nf4/int8 base (default 1)\n"
    "  --steps N             optimizer updates\n"
    "  --epochs E            or: passes over the data (updates = ceil(E * rows / (batch * accum)))\n"
    "  --batch B             rows per micro-batch (default 8)\n"
    "  --accum K             micro-batches per update (default 1)\n"
    "  --seq T               tokens per row: plain text is cut into rows of T (default 256); longer JSONL rows are\n"
    "                        cut to T (default: none, batches as long as the longest row, shorter rows padded with\n"
    "                        ignored labels); with --pack the length of a packed row\n"
    "  --optimizer O         adamw or sgd (default adamw)\n"
    "  --lr X                peak learning rate (default 2e-4)\n"
    "  --momentum X          SGD momentum (default 0.9 with --optimizer sgd)\n"
    "  --weight-decay X      AdamW decoupled decay / SGD L2 (default 0); never on RMSNorm weights\n"
    "  --schedule S          constant, linear or cosine (default linear)\n"
    "  --warmup N            linear warm-up updates (default 0)\n"
    "  --clip X              clip the global gradient norm to X; 0 = off (default 1.0)\n"
    "  --eval-data FILE      held-out rows (same format as --data)\n"
    "  --eval-every N        evaluate every N updates (default: only at the end)\n"
    "  --save-every N        save OUT and OUT/state every N updates (default: only at the end)\n"
    "  --seed S              data order, dropout and adapter initialisation (default 0)\n"
    "  --resume DIR          continue from a training state (e.g. OUT/state) with the same options\n"
    "  --threads N           BLAS threads (default: OPENBLAS_NUM_THREADS or all cores; under mpirun the cores\n"
    "                        the process is bound to, or this node's cores shared among its processes)\n"
    "  --grad-checkpoint     activation checkpointing: keep each layer's input only and recompute the layer in\n"
    "                        the backward pass (the same gradients; about one more forward per step, far less\n"
    "                        activation memory)\n"
    "  --convert-to-lora     PiSSA methods: also write OUT/lora, the trained adapter as an ordinary rank-2r\n"
    "                        LoRA adapter for the ORIGINAL base model (what people publish)\n"
    "  --json                one summary line on stdout\n"
    "  -q, --quiet           no progress line\n"
    "  -h, --help            this text\n",
    "\n"
    "mpirun -np N pissa-finetune ... trains the same adapter with N processes (same options; every process needs\n"
    "the inputs, process 0 writes OUT): see docs/distributed.md.\n",
    NULL};

/* ---- several processes: mpirun -np N pissa-finetune ... ----
 * Every process runs this program on the same inputs; the trainer splits each micro-batch across them
 * (pissa_trainer_create_comm). Process 0 alone writes OUT and prints progress and --json. A failure on any process
 * ends every process with that process's message, never a hang: the trainer's collective calls agree on failures
 * themselves (FAIL_TOGETHER: every process fails alike); between them every process calls job_sync at the same
 * points, and one that fails before its next job_sync joins it with its message instead (FAIL_AT_SYNC); a failure
 * anywhere else would abort the whole job (FAIL_ALONE, MPI_Abort). */
typedef enum fail_mode { FAIL_AT_SYNC, FAIL_TOGETHER, FAIL_ALONE } fail_mode;
static struct {
    pissa_comm *comm; /* NULL: one process */
    int rank, size;
    int threads;      /* the default thread count under a launcher (job_start) */
    fail_mode mode;
} job = {.size = 1};

/* Ends this process (MSG: printed by process 0, if not NULL). */
static void job_exit(int code, const char *msg) {
    if (job.rank == 0 && msg) cli_report(code, msg);
    pissa_comm_free(job.comm);
#ifdef PISSA_HAVE_MPI
    MPI_Finalize();
#endif
    exit(code);
}

/* Every process calls this at the same points: it returns when none failed since the last one. */
static void job_sync(void) {
    if (job.size > 1 && pissa_comm_agree(job.comm, PISSA_OK, NULL) != PISSA_OK) job_exit(1, pissa_last_error());
}

#ifdef PISSA_HAVE_MPI
/* cli_fail_hook: how a failure on this process ends the job, by the mode of the stretch it happened in. */
static void job_fail(int code, const char *msg) {
    if (job.mode == FAIL_AT_SYNC) {
        pissa_comm_agree(job.comm, PISSA_ERR_INVALID_ARG, msg); /* the others are at (or heading for) job_sync */
        job_exit(code, pissa_last_error());
    }
    if (job.mode == FAIL_TOGETHER) job_exit(code, msg);
    fprintf(stderr, "%s: rank %d of %d: %s\n", cli_prog, job.rank, job.size, msg);
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

/* Started by an MPI launcher (Open MPI's mpirun, or a PMI one such as MPICH's or Slurm's)? Otherwise the program
 * runs alone without starting MPI at all. */
static int launched_by_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

/* Threads when neither --threads nor OPENBLAS_NUM_THREADS says, under a launcher: the cores it bound this process
 * to, or else this node's cores shared among its processes. Collective. */
static int default_threads(void) {
    MPI_Comm node;
    int local = 1;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
        MPI_Comm_size(node, &local);
        MPI_Comm_free(&node);
    }
    cpu_set_t set;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int mine = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    int threads = mine > 0 && mine < online ? mine : (int)(online / local);
    return threads < 1 ? 1 : threads;
}
#endif

/* Under a launcher: MPI, the communicator, and the failure hook. The program owns MPI (the library never
 * initialises it unless asked); libpissa calls MPI only from this thread, so MPI_THREAD_FUNNELED suffices. */
static void job_start(void) {
#ifdef PISSA_HAVE_MPI
    if (!launched_by_mpi()) return;
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) cli_fail("MPI_Init_thread failed");
    MPI_Comm world = MPI_COMM_WORLD;
    cli_check(pissa_comm_create(&world, &job.comm), "MPI");
    job.rank = pissa_comm_rank(job.comm);
    job.size = pissa_comm_size(job.comm);
    job.threads = default_threads();
    job.mode = FAIL_AT_SYNC;
    cli_fail_hook = job_fail;
#endif
}

typedef struct ctx {
    const char *out, *model_path;
    pissa_model *m;
    pissa_peft_adapter *init; /* PiSSA: the initial adapter, for OUT/pissa_init and the residual model */
    int pissa;               /* a PiSSA method: OUT holds the residual model */
    int full;                /* --method full: OUT is the trained checkpoint */
    int convert;             /* --convert-to-lora */
    int resumed;             /* --resume: OUT's earlier files belong to this run */
    int saved;               /* OUT has been written by this run */
    pissa_peft_config *peft; /* the adapter config written to OUT for PiSSA methods */
    pissa_trainer *t;
    FILE *log;               /* log.csv's lines, in memory: written to OUT with each save */
    char *log_buf;
    size_t log_len;
} ctx;

static int exists(const char *path) {
    struct stat s;
    return stat(path, &s) == 0;
}

static int is_dir(const char *path) {
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

static void write_pissa_init(ctx *c, const char *dst);
static void write_converted(const char *dst, const char *model_path);
static void save_out(ctx *c, int final);

/* A new version of OUT, switched in whole: the adapter (or in full mode the model), the training state and the log
 * of the same update, so OUT never mixes two saves or two runs. Its first save in a fresh run drops every file a run
 * of this program writes (an earlier run's residual model must not stay beside a new adapter); later saves carry the
 * unchanged residual model and pissa_init by hard link. FINAL: the end of the run (--convert-to-lora's OUT/lora). */
static void save_all(ctx *c, int final) {
    fail_mode mode = job.mode;
    job.mode = FAIL_AT_SYNC;
    if (job.rank == 0) save_out(c, final);
    job_sync(); /* a failed save ends every process with process 0's message */
    job.mode = mode;
}

static void save_out(ctx *c, int final) {
    static const char *const fresh[] = {CLI_ADAPTER_FILES, CLI_CHECKPOINT_FILES, "pissa_init", "state", "lora",
                                        "log.csv", NULL};
    static const char *const later[] = {CLI_ADAPTER_FILES, "state", "lora", "log.csv", NULL};
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/model.safetensors", c->out);
    int write_base = c->full || (c->pissa && !((c->saved || c->resumed) && exists(path)));
    const char *dst = cli_out_begin(c->out, !c->saved && !c->resumed ? fresh : write_base ? fresh : later);
    if (write_base && is_dir(c->model_path)) cli_copy_companions(c->model_path, dst); /* OUT is a checkpoint */
    if (c->pissa && write_base) write_pissa_init(c, dst);
    if (c->pissa) cli_check(pissa_trainer_save_peft(c->t, c->peft, dst), c->out);
    else cli_check(pissa_trainer_save(c->t, dst), c->out); /* the adapter, or in full mode the model */
    snprintf(path, sizeof path, "%s/state", dst);
    cli_check(pissa_trainer_save_state(c->t, path), "state");
    fflush(c->log);
    snprintf(path, sizeof path, "%s/log.csv", dst);
    cli_check(pissa_write_file_atomic(path, c->log_buf, c->log_len), "log.csv");
    if (final && c->convert) write_converted(dst, c->model_path);
    cli_out_commit();
    c->saved = 1;
}

/* OUT/lora: W_res + s·B·A = W + s'·B'·A' with A' = [A; A0], B' = [B, −B0] (docs/interop.md), for the original base. */
static void write_converted(const char *out, const char *model_path) {
    char init[PATH_MAX], lora[PATH_MAX];
    snprintf(init, sizeof init, "%s/pissa_init", out);
    snprintf(lora, sizeof lora, "%s/lora", out);
    pissa_peft_adapter *trained, *initial, *converted;
    cli_check(pissa_peft_adapter_load(out, &trained), out);
    cli_check(pissa_peft_adapter_load(init, &initial), init);
    cli_check(pissa_peft_pissa_to_lora(trained, initial, model_path, &converted), "--convert-to-lora");
    cli_check(pissa_peft_adapter_save(converted, lora, PISSA_F32), lora);
    pissa_peft_adapter_free(converted);
    pissa_peft_adapter_free(initial);
    pissa_peft_adapter_free(trained);
}

/* log.csv's lines, kept in memory (C->log) and written with each save: fresh, or on resume OUT's lines up to the
 * resumed update (a run interrupted after its last save may have logged updates that will be redone). */
static void open_log(ctx *c, int64_t keep_until) {
    c->log = open_memstream(&c->log_buf, &c->log_len);
    if (!c->log) cli_fail("out of memory");
    char path[PATH_MAX], line[512];
    snprintf(path, sizeof path, "%s/log.csv", c->out);
    FILE *f = c->resumed && job.rank == 0 ? fopen(path, "r") : NULL; /* only process 0 has OUT */
    int header = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "step,", 5) ? (header = 1) : strtoll(line, NULL, 10) <= keep_until) fputs(line, c->log);
    if (f) fclose(f);
    if (!header) fputs("step,split,loss,lr,grad_norm,tokens\n", c->log);
}

/* The rows of PATH in any format (docs/data.md); plain text is cut into rows of SEQ tokens (256 when 0). PACK: into
 * rows of SEQ tokens. */
static pissa_dataset *load_data(const char *path, const pissa_tokenizer *tok, pissa_data_opts o, int64_t seq,
                                int pack, int32_t vocab) {
    pissa_dataset *d;
    o.max_len = seq;
    if (o.format == PISSA_DATA_AUTO) cli_check(pissa_data_detect_format(path, &o.format), path);
    if (o.format == PISSA_DATA_TEXT) {
        if (!tok) cli_usage_error("%s is plain text: it needs a tokenizer (--tokenizer, or a model folder with one)",
                                  path);
        o.max_len = seq ? seq : 256;
    }
    cli_check(pissa_dataset_load(path, tok, vocab, &o, &d), path);
    if (!pissa_dataset_count(d)) cli_fail("%s: no rows (a text shorter than --seq tokens gives none)", path);
    if (!pissa_dataset_target_count(d, o.max_len)) cli_fail("%s: no targets (every label after a row's first is -100)", path);
    if (pack) {
        pissa_dataset *packed;
        cli_check(pissa_dataset_pack(d, o.max_len, &packed), path);
        pissa_dataset_free(d);
        d = packed;
    }
    return d;
}

/* The residual model in DST (OUT's new version), the model's own residuals W − s·B0·A0 (QPiSSA's on an nf4/int8
 * base), in the checkpoint's dtype, and the initial adapter in DST/pissa_init, as pissa-init writes them. */
static void write_pissa_init(ctx *c, const char *dst) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/pissa_init", dst);
    cli_check(pissa_peft_adapter_save(c->init, path, PISSA_F32), "pissa_init");
    cli_check(pissa_model_save(c->m, dst, -1), c->out);
}

/* The initial adapter (A0, B0) of a PiSSA method, kept until OUT is first written. */
static pissa_peft_adapter *initial_adapter(const pissa_model *m, const pissa_peft_config *peft) {
    pissa_peft_adapter *init;
    cli_check(pissa_peft_adapter_create(peft, &init), "adapter");
    for (size_t i = 0; i < pissa_model_adapter_count(m); i++) {
        pissa_adapter_view a;
        cli_check(pissa_model_adapter(m, i, &a), "adapter");
        cli_check(pissa_peft_adapter_add(init, a.module, a.r, a.in, a.out, a.A, a.B), a.module);
    }
    return init;
}

/* Options that shape an adapter; --method full refuses them. */
static int is_adapter_opt(const char *a) {
    static const char *opts[] = {"--rank", "--alpha", "--rslora", "--target", "--dropout", "--qiter", "--base-dtype",
                                 "--quantize"};
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
        if (!strcmp(a, opts[k])) return 1;
    return 0;
}

static void fmt_time(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

int main(int argc, char **argv) {
    cli_prog = "pissa-finetune";
    job_start();
    if (job.rank == 0) pissa_set_log_callback(cli_log_to_stderr, NULL); /* the others would repeat it */
    const char *model_path = NULL, *data_path = NULL, *tok_path = NULL, *out = NULL, *method = "pissa_niter_4";
    const char *targets = "q_proj,v_proj", *eval_path = NULL, *resume = NULL, *adapter = NULL, *template_path = NULL;
    pissa_data_opts data_opts = pissa_data_default_opts();
    int shaped = 0; /* --method, --rank, --alpha, --target or --rslora given */
    const char *adapter_opt = NULL; /* the first option that shapes an adapter, refused with --method full */
    int64_t rank = 8, steps = 0, seq = 0, eval_every = 0, save_every = 0;
    double alpha = NAN, epochs = 0, dropout = 0, momentum = NAN;
    int rslora = 0, json = 0, convert = 0, quiet = 0, threads = 0, qiter = 1, checkpoint = 0, pack = 0;
    pissa_model_opts mo = pissa_model_default_opts();
    pissa_train_opts o = pissa_train_default_opts();
    o.optim.lr = 2e-4;
    o.schedule = PISSA_SCHEDULE_LINEAR;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!adapter_opt && is_adapter_opt(a)) adapter_opt = a;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (job.rank == 0)
                for (const char *const *u = usage; *u; u++) fputs(*u, stdout);
            if (job.comm) job_exit(0, NULL);
            return 0;
        } else if (!strcmp(a, "--model")) model_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--data")) data_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--tokenizer")) tok_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--data-format")) {
            if (pissa_data_format_parse(cli_value(argc, argv, &i), &data_opts.format) != PISSA_OK)
                cli_usage_error("--data-format: %s", pissa_last_error());
        }
        else if (!strcmp(a, "--chat-template")) template_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--all-tokens")) data_opts.assistant_only_loss = data_opts.completion_only_loss = 0;
        else if (!strcmp(a, "--pack")) pack = 1;
        else if (!strcmp(a, "--out")) out = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--method") && ++shaped) method = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--rank") && ++shaped) rank = cli_int(a, cli_value(argc, argv, &i), 1, INT32_MAX);
        else if (!strcmp(a, "--alpha") && ++shaped) alpha = cli_double(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--rslora") && ++shaped) rslora = 1;
        else if (!strcmp(a, "--target") && ++shaped) targets = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--dropout")) dropout = cli_double(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--base-dtype")) mo.base_dtype = cli_qtype(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--quantize")) {
            mo.base_dtype = cli_qtype(a, cli_value(argc, argv, &i));
            if (!pissa_qtype_is_quantized((pissa_qtype)mo.base_dtype)) cli_usage_error("--quantize: nf4 or int8");
        } else if (!strcmp(a, "--qiter") && ++shaped) qiter = (int)cli_int(a, cli_value(argc, argv, &i), 1, 1000);
        else if (!strcmp(a, "--steps")) steps = cli_int(a, cli_value(argc, argv, &i), 1, INT64_MAX / 2);
        else if (!strcmp(a, "--epochs")) epochs = cli_double(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--batch")) o.batch = (int)cli_int(a, cli_value(argc, argv, &i), 1, 1 << 16);
        else if (!strcmp(a, "--accum")) o.accum = (int)cli_int(a, cli_value(argc, argv, &i), 1, 1 << 16);
        else if (!strcmp(a, "--seq")) seq = cli_int(a, cli_value(argc, argv, &i), 2, 1 << 20);
        else if (!strcmp(a, "--optimizer")) {
            if (pissa_optim_kind_parse(cli_value(argc, argv, &i), &o.optim.kind) != PISSA_OK)
                cli_usage_error("--optimizer: %s", pissa_last_error());
        } else if (!strcmp(a, "--lr")) o.optim.lr = cli_double(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--momentum")) momentum = cli_double(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--weight-decay")) o.optim.weight_decay = cli_double(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--schedule")) {
            if (pissa_schedule_parse(cli_value(argc, argv, &i), &o.schedule) != PISSA_OK)
                cli_usage_error("--schedule: %s", pissa_last_error());
        } else if (!strcmp(a, "--warmup")) o.warmup = cli_int(a, cli_value(argc, argv, &i), 0, INT64_MAX / 2);
        else if (!strcmp(a, "--clip")) o.max_grad_norm = cli_double(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--eval-data")) eval_path = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--eval-every")) eval_every = cli_int(a, cli_value(argc, argv, &i), 1, INT64_MAX / 2);
        else if (!strcmp(a, "--save-every")) save_every = cli_int(a, cli_value(argc, argv, &i), 1, INT64_MAX / 2);
        else if (!strcmp(a, "--seed")) o.seed = cli_u64(a, cli_value(argc, argv, &i));
        else if (!strcmp(a, "--resume")) resume = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--threads")) threads = (int)cli_int(a, cli_value(argc, argv, &i), 1, 1024);
        else if (!strcmp(a, "--grad-checkpoint")) checkpoint = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--convert-to-lora")) convert = 1;
        else if (!strcmp(a, "--adapter")) adapter = cli_value(argc, argv, &i);
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) quiet = 1;
        else cli_usage_error("unknown option '%s'", a);
    }
    if (!model_path) cli_usage_error("--model PATH is required");
    int full = !strcmp(method, "full");
    if (full && (adapter_opt || adapter || convert))
        cli_usage_error("--method full trains every weight: %s applies to adapters only",
                        adapter_opt ? adapter_opt : adapter ? "--adapter" : "--convert-to-lora");
    if (adapter && shaped) cli_usage_error("--adapter continues a saved adapter: it fixes the method, rank, alpha and targets");
    if (adapter && convert) cli_usage_error("--convert-to-lora needs the pissa_init adapter of a PiSSA run, not --adapter");
    if (convert && strncmp(method, "pissa", 5) != 0)
        cli_usage_error("--convert-to-lora applies to the PiSSA methods only (a LoRA adapter already is one)");
    if (!data_path) cli_usage_error("--data FILE is required");
    if (pack && !seq) cli_usage_error("--pack needs --seq T, the length of a packed row");
    if (!out) cli_usage_error("--out DIR is required");
    /* No input may be overwritten; --resume OUT/state is how a run continues (its state is replaced whole). */
    cli_check_output("--out", out, "--model", model_path);
    cli_check_output("--out", out, "--data", data_path);
    cli_check_output("--out", out, "--eval-data", eval_path);
    cli_check_output("--out", out, "--tokenizer", tok_path);
    cli_check_output("--out", out, "--adapter", adapter);
    cli_check_output("--out", out, "--chat-template", template_path);
    if (!steps == !(epochs > 0)) cli_usage_error("give exactly one of --steps N and --epochs E (E > 0)");
    if (!isnan(alpha) && !(alpha > 0 && isfinite(alpha))) cli_usage_error("--alpha must be a positive number");
    if (!(dropout >= 0 && dropout < 1)) cli_usage_error("--dropout must lie in [0, 1)");
    if (!(o.optim.lr >= 0 && isfinite(o.optim.lr))) cli_usage_error("--lr must be a non-negative number");
    if (!(o.max_grad_norm >= 0)) cli_usage_error("--clip must be >= 0");
    if (!(o.optim.weight_decay >= 0)) cli_usage_error("--weight-decay must be >= 0");
    if (o.optim.kind == PISSA_OPTIM_SGD) o.optim.momentum = isnan(momentum) ? 0.9 : momentum;
    else if (!isnan(momentum)) cli_usage_error("--momentum applies to --optimizer sgd only");
    if (!threads && job.comm && !getenv("OPENBLAS_NUM_THREADS")) threads = job.threads;
    if (threads) pissa_set_num_threads(threads);
    if (job.rank != 0) quiet = 1, json = 0; /* process 0 speaks for the job */

    pissa_adapter_opts ao = pissa_adapter_default_opts();
    if (!full && pissa_init_parse(method, &ao.init) != PISSA_OK) cli_usage_error("--method: %s", pissa_last_error());
    if (pissa_proj_parse(targets, &ao.targets) != PISSA_OK) cli_usage_error("--target: %s", pissa_last_error());
    ao.init.rank = rank;
    ao.init.alpha = isnan(alpha) ? (double)rank : alpha;
    ao.init.use_rslora = rslora;
    ao.init.seed = o.seed;
    ao.dropout = dropout;
    ao.qiter = qiter;

    double t0 = cli_now();
    int pissa_kind = ao.init.kind == PISSA_INIT_PISSA || ao.init.kind == PISSA_INIT_PISSA_NITER;
    ctx c = {.out = out, .model_path = model_path, .pissa = !full && !adapter && pissa_kind, .full = full,
             .convert = convert, .resumed = resume != NULL};
    /* Every input is loaded and checked before OUT is touched; OUT is first written by the first save. */
    pissa_model *m;
    cli_check(pissa_model_load_with_opts(model_path, &mo, &m), model_path);
    c.m = m;
    const pissa_llama_config *cfg = pissa_model_config(m);
    if (full) cli_check(pissa_model_set_full_finetune(m), "--method full");
    else if (adapter) cli_check(pissa_model_load_adapter(m, adapter), adapter);
    else cli_check(pissa_model_add_adapters(m, &ao), "adapters");
    pissa_model_set_grad_checkpoint(m, checkpoint);
    if (c.pissa) {
        c.peft = cli_residual_adapter_config(rank, ao.init.alpha, rslora, dropout, ao.targets, out);
        c.init = initial_adapter(m, c.peft);
    }

    pissa_tokenizer *tok = cli_tokenizer(tok_path, model_path, (int32_t)cfg->vocab_size);
    char *template_text = template_path ? cli_read_file(template_path, NULL) : NULL;
    data_opts.chat_template = template_text;
    o.seq = 0; /* rows are cut to --seq when read: batches as long as the longest */
    pissa_dataset *data = load_data(data_path, tok, data_opts, seq, pack, (int32_t)cfg->vocab_size);
    pissa_dataset *eval = eval_path ? load_data(eval_path, tok, data_opts, seq, 0, (int32_t)cfg->vocab_size) : NULL;
    size_t rows = pissa_dataset_count(data);
    int64_t per_update = (int64_t)o.batch * o.accum;
    o.total_steps = steps ? steps : (int64_t)ceil(epochs * (double)rows / (double)per_update);
    if (o.total_steps < 1) o.total_steps = 1;
    job_sync(); /* every process has its inputs */
    job.mode = FAIL_TOGETHER; /* collective calls: every process fails alike */
    cli_check(pissa_trainer_create_comm(m, data, &o, job.size > 1 ? job.comm : NULL, &c.t), "trainer");
    if (resume) cli_check(pissa_trainer_load_state(c.t, resume), resume);
    int64_t start = pissa_trainer_steps(c.t);
    job.mode = FAIL_AT_SYNC;
    open_log(&c, start);
    if (!quiet) {
        char what[512];
        if (full) {
            size_t n = 0;
            for (size_t i = 0; i < pissa_model_param_count(m); i++) {
                pissa_param_view v;
                cli_check(pissa_model_param(m, i, &v), "parameters");
                n += (size_t)(v.rows * v.cols);
            }
            snprintf(what, sizeof what, "full fine-tuning of %zu parameters", n);
        } else if (adapter) snprintf(what, sizeof what, "adapter %s", adapter);
        else snprintf(what, sizeof what, "%s r %lld on %s", method, (long long)rank, targets);
        if (mo.base_dtype >= 0)
            snprintf(what + strlen(what), sizeof what - strlen(what), ", %s base",
                     pissa_qtype_name((pissa_qtype)mo.base_dtype));
        char procs[64] = "";
        if (job.size > 1) snprintf(procs, sizeof procs, " over %d processes", job.size);
        fprintf(stderr, "pissa-finetune: %s, %s; %zu rows, %lld updates of %d x %d rows%s%s (%.2f s)\n", model_path,
                what, rows, (long long)o.total_steps, o.accum, o.batch, procs, resume ? ", resumed" : "",
                cli_now() - t0);
    }
    job_sync();
    job.mode = FAIL_TOGETHER;

    double t1 = cli_now(), last_print = 0, eval_loss = NAN, last_loss = NAN;
    int64_t tokens = 0, eval_tokens = 0;
    int tty = isatty(2);
    for (int64_t k = start; k < o.total_steps; k++) {
        pissa_step_info s;
        char what[64];
        snprintf(what, sizeof what, "update %lld", (long long)k + 1);
        pissa_status st = pissa_trainer_step(c.t, &s);
        if (st != PISSA_OK) {
            if (!quiet && tty) fputc('\n', stderr);
            cli_fail("%s: %s (%s keeps the last saved %s)", what, pissa_last_error(), out, full ? "model" : "adapter");
        }
        tokens += s.tokens;
        last_loss = s.loss;
        fprintf(c.log, "%lld,train,%.8g,%.8g,%.8g,%lld\n", (long long)s.step, s.loss, s.lr, s.grad_norm,
                (long long)s.tokens);
        if (eval && eval_every && s.step % eval_every == 0 && s.step < o.total_steps) {
            cli_check(pissa_trainer_evaluate(c.t, eval, &eval_loss, &eval_tokens), eval_path);
            fprintf(c.log, "%lld,eval,%.8g,,,%lld\n", (long long)s.step, eval_loss, (long long)eval_tokens);
            if (!quiet) fprintf(stderr, "%supdate %lld: eval loss %.4f\n", tty ? "\n" : "", (long long)s.step, eval_loss);
        }
        if (save_every && s.step % save_every == 0 && s.step < o.total_steps) save_all(&c, 0);
        double now = cli_now(), el = now - t1;
        if (!quiet && (now - last_print > (tty ? 0.2 : 2.0) || s.step == o.total_steps)) {
            char eta[32];
            fmt_time(el / (double)(s.step - start) * (double)(o.total_steps - s.step), eta, sizeof eta);
            fprintf(stderr, "%sstep %lld/%lld  loss %.4f  lr %.3g  |g| %.3g  %.0f tok/s  ETA %s%s",
                    tty ? "\r" : "", (long long)s.step, (long long)o.total_steps, s.loss, s.lr, s.grad_norm,
                    (double)tokens / el, eta, tty ? "   " : "\n");
            last_print = now;
        }
    }
    if (!quiet && tty) fputc('\n', stderr);
    if (eval) {
        cli_check(pissa_trainer_evaluate(c.t, eval, &eval_loss, &eval_tokens), eval_path);
        fprintf(c.log, "%lld,eval,%.8g,,,%lld\n", (long long)pissa_trainer_steps(c.t), eval_loss,
                (long long)eval_tokens);
        if (!quiet) fprintf(stderr, "pissa-finetune: eval loss %.6f on %lld targets\n", eval_loss, (long long)eval_tokens);
    }
    save_all(&c, 1);
    fclose(c.log);
    free(c.log_buf);
    double secs = cli_now() - t1;
    if (json) {
        printf("{\"steps\": %lld, \"loss\": %.8g, \"tokens\": %lld, \"seconds\": %.3f, \"tokens_per_s\": %.1f, "
               "\"processes\": %d",
               (long long)pissa_trainer_steps(c.t), last_loss, (long long)tokens, secs, secs > 0 ? tokens / secs : 0.0,
               job.size);
        if (eval) printf(", \"eval_loss\": %.8g, \"eval_tokens\": %lld", eval_loss, (long long)eval_tokens);
        printf(", \"out\": ");
        cli_json_string(stdout, out);
        printf("}\n");
    } else if (!quiet) {
        fprintf(stderr, "pissa-finetune: %lld updates, %lld tokens in %.2f s; wrote %s\n",
                (long long)pissa_trainer_steps(c.t) - start, (long long)tokens, secs, out);
    }
    pissa_trainer_free(c.t);
    pissa_peft_adapter_free(c.init);
    pissa_peft_config_free(c.peft);
    pissa_dataset_free(eval);
    pissa_dataset_free(data);
    pissa_tokenizer_free(tok);
    free(template_text);
    pissa_model_free(m);
    if (job.comm) job_exit(0, NULL);
    return 0;
}
