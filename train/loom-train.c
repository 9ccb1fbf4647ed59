/* loom-train: train an MLP with any DP x TP x PP layout over loom. Launched by loomrun,
 * mpirun, torchrun or Slurm (loom_comm_init_env); every rank runs this program. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "loom.h"
#include "trainer.h"

#ifdef LOOM_HAVE_OPENBLAS
#include <cblas.h>
#endif

static void usage(FILE *f)
{
    fprintf(f,
        "usage: loom-train [options]   (one process per rank: loomrun -n N loom-train ...)\n"
        "  --dp N --tp N --pp N        layout; dp x tp x pp = ranks (default 1 1 1)\n"
        "  --schedule gpipe|1f1b       pipeline schedule (default 1f1b)\n"
        "  --micro-batches M           micro-batches per batch (default 1)\n"
        "  --grad-accum K              batches per optimizer step (default 1)\n"
        "  --zero 0|1                  ZeRO-1 optimizer-state sharding over dp (default 0)\n"
        "  --bucket-mb X               data-parallel gradient bucket size in MiB (default 25)\n"
        "  --epochs E --batch B        epochs, global batch (defaults 5, 128)\n"
        "  --steps S                   at most S optimizer steps per epoch (default: all)\n"
        "  --data fashion-mnist|synthetic  (default fashion-mnist)\n"
        "  --data-dir DIR              IDX files (default " FASHION_MNIST_DIR ")\n"
        "  --synthetic-n N --in N      synthetic samples and features (defaults 8192, 64)\n"
        "  --depth N --hidden N        hidden layers and width (defaults 2, 256)\n"
        "  --act relu|gelu --opt sgd|adamw --lr X --momentum X --weight-decay X\n"
        "                              (defaults relu, adamw, 1e-3, 0.9, 0)\n"
        "  --lr-schedule const|cosine  cosine: lr decays to 0 over the run (default)\n"
        "  --device cpu|cuda --seed S --trace FILE (Chrome-trace JSON; open in Perfetto)\n");
}

static int parse_int(const char *opt, const char *s, int lo)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > 1 << 30) {
        fprintf(stderr, "loom-train: --%s wants an integer >= %d, got '%s'\n", opt, lo, s);
        exit(2);
    }
    return (int)v;
}

static double parse_num(const char *opt, const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || v < 0) {
        fprintf(stderr, "loom-train: --%s wants a number >= 0, got '%s'\n", opt, s);
        exit(2);
    }
    return v;
}

static int pick(const char *opt, const char *s, const char *a, const char *b)
{
    if (!strcmp(s, a)) return 0;
    if (!strcmp(s, b)) return 1;
    fprintf(stderr, "loom-train: --%s wants %s or %s, got '%s'\n", opt, a, b, s);
    exit(2);
}

int main(int argc, char **argv)
{
    struct train_cfg c = { .dp = 1, .tp = 1, .pp = 1, .micro = 1, .accum = 1, .schedule = SCHED_1F1B,
                           .batch = 128, .depth = 2, .hidden = 256, .classes = 10, .act = ACT_RELU,
                           .opt = OPT_ADAMW, .lr = 1e-3f, .momentum = 0.9f, .weight_decay = 0,
                           .bucket_bytes = 25u << 20, .seed = 1, .device = DEV_CPU };
    int epochs = 5, max_steps = 0, cosine = 1, synthetic = 0, syn_n = 8192, syn_in = 64;
    const char *dir = FASHION_MNIST_DIR, *trace_path = NULL;
    enum { O_DP = 256, O_TP, O_PP, O_SCHED, O_MICRO, O_ACCUM, O_ZERO, O_BUCKET, O_EPOCHS, O_BATCH,
           O_STEPS, O_DATA, O_DIR, O_SYN_N, O_IN, O_DEPTH, O_HIDDEN, O_ACT, O_OPT, O_LR, O_MOM,
           O_WD, O_SCHEDLR, O_DEVICE, O_SEED, O_TRACE, O_HELP, O_VERSION };
    static const struct option opts[] = {
        { "dp", 1, 0, O_DP }, { "tp", 1, 0, O_TP }, { "pp", 1, 0, O_PP }, { "schedule", 1, 0, O_SCHED },
        { "micro-batches", 1, 0, O_MICRO }, { "grad-accum", 1, 0, O_ACCUM }, { "zero", 1, 0, O_ZERO },
        { "bucket-mb", 1, 0, O_BUCKET }, { "epochs", 1, 0, O_EPOCHS }, { "batch", 1, 0, O_BATCH },
        { "steps", 1, 0, O_STEPS }, { "data", 1, 0, O_DATA }, { "data-dir", 1, 0, O_DIR },
        { "synthetic-n", 1, 0, O_SYN_N }, { "in", 1, 0, O_IN }, { "depth", 1, 0, O_DEPTH },
        { "hidden", 1, 0, O_HIDDEN }, { "act", 1, 0, O_ACT }, { "opt", 1, 0, O_OPT }, { "lr", 1, 0, O_LR },
        { "momentum", 1, 0, O_MOM }, { "weight-decay", 1, 0, O_WD }, { "lr-schedule", 1, 0, O_SCHEDLR }, { "device", 1, 0, O_DEVICE },
        { "seed", 1, 0, O_SEED }, { "trace", 1, 0, O_TRACE }, { "help", 0, 0, O_HELP }, { "version", 0, 0, O_VERSION },
        { 0, 0, 0, 0 }
    };
    int o, li = 0;
    while ((o = getopt_long(argc, argv, "", opts, &li)) != -1) {
        const char *name = opts[li].name;
        switch (o) {
        case O_DP: c.dp = parse_int(name, optarg, 1); break;
        case O_TP: c.tp = parse_int(name, optarg, 1); break;
        case O_PP: c.pp = parse_int(name, optarg, 1); break;
        case O_SCHED: c.schedule = pick(name, optarg, "gpipe", "1f1b") ? SCHED_1F1B : SCHED_GPIPE; break;
        case O_MICRO: c.micro = parse_int(name, optarg, 1); break;
        case O_ACCUM: c.accum = parse_int(name, optarg, 1); break;
        case O_ZERO: c.zero = pick(name, optarg, "0", "1"); break;
        case O_BUCKET: c.bucket_bytes = (size_t)(parse_num(name, optarg) * (1 << 20)); break;
        case O_EPOCHS: epochs = parse_int(name, optarg, 1); break;
        case O_BATCH: c.batch = parse_int(name, optarg, 1); break;
        case O_STEPS: max_steps = parse_int(name, optarg, 1); break;
        case O_DATA: synthetic = pick(name, optarg, "fashion-mnist", "synthetic"); break;
        case O_DIR: dir = optarg; break;
        case O_SYN_N: syn_n = parse_int(name, optarg, 1); break;
        case O_IN: syn_in = parse_int(name, optarg, 1); break;
        case O_DEPTH: c.depth = parse_int(name, optarg, 0); break;
        case O_HIDDEN: c.hidden = parse_int(name, optarg, 1); break;
        case O_ACT: c.act = pick(name, optarg, "relu", "gelu") ? ACT_GELU : ACT_RELU; break;
        case O_OPT: c.opt = pick(name, optarg, "sgd", "adamw") ? OPT_ADAMW : OPT_SGD; break;
        case O_LR: c.lr = (float)parse_num(name, optarg); break;
        case O_MOM: c.momentum = (float)parse_num(name, optarg); break;
        case O_WD: c.weight_decay = (float)parse_num(name, optarg); break;
        case O_SCHEDLR: cosine = pick(name, optarg, "const", "cosine"); break;
        case O_DEVICE: c.device = pick(name, optarg, "cpu", "cuda") ? DEV_CUDA : DEV_CPU; break;
        case O_SEED: c.seed = (unsigned long long)parse_int(name, optarg, 0); break;
        case O_TRACE: trace_path = optarg; break;
        case O_HELP: usage(stdout); return 0;
        case O_VERSION:
            printf("loom-train (loom) %d.%d.%d\n", LOOM_VERSION_MAJOR, LOOM_VERSION_MINOR, LOOM_VERSION_PATCH);
            return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "loom-train: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
#ifdef LOOM_HAVE_OPENBLAS
    /* ranks share the host's cores; one BLAS thread each unless told otherwise */
    if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
#endif

    struct dataset train = { 0 }, test = { 0 };
    char err[512];
    if (synthetic) {
        data_synthetic(&train, syn_n, syn_in, 10, c.seed + 101, 7);
        data_synthetic(&test, syn_n / 4, syn_in, 10, c.seed + 202, 7);
    } else if (data_fashion_mnist(dir, &train, &test, err, sizeof err)) {
        fprintf(stderr, "loom-train: %s\n", err);
        return 1;
    }
    c.in = train.dim;
    c.classes = train.classes;

    loom_comm_t world;
    int rc = 1;
    loom_result_t r = loom_comm_init_env(&world);
    if (r != LOOM_SUCCESS) {
        fprintf(stderr, "loom-train: loom_comm_init_env: %s: %s\n", loom_strerror(r), loom_last_error(NULL));
        goto out_data;
    }
    int rank = loom_comm_rank(world);
    c.gpu = rank;
    struct trace tr = { 0 };
    if (trace_path) c.trace = &tr;
    int steps = train.n / (c.batch * c.accum);
    if (max_steps && steps > max_steps) steps = max_steps;
    if (steps == 0) {
        fprintf(stderr, "loom-train: %d samples do not make one step of %d x %d\n", train.n, c.batch, c.accum);
        loom_comm_destroy(world);
        goto out_data;
    }
    if (cosine) c.decay_steps = (long)steps * epochs;
    struct trainer *t;
    if (trainer_create(&t, &c, world, err, sizeof err)) {
        fprintf(stderr, "loom-train: rank %d: %s\n", rank, err);
        loom_comm_destroy(world);
        goto out_data;
    }
    if (rank == 0)
        printf("loom-train: %d ranks = dp %d x tp %d x pp %d, %s, %d micro-batches, grad-accum %d, zero %d; "
               "%s; mlp %d-%dx%d-%d %s, %s lr %g; batch %d, %d steps/epoch\n",
               loom_comm_size(world), c.dp, c.tp, c.pp, c.schedule == SCHED_GPIPE ? "gpipe" : "1f1b",
               c.micro, c.accum, c.zero, c.device == DEV_CUDA ? "cuda" : "cpu", c.in, c.depth, c.hidden,
               c.classes, c.act == ACT_GELU ? "gelu" : "relu", c.opt == OPT_SGD ? "sgd" : "adamw",
               (double)c.lr, c.batch, steps);
    int *perm = malloc(sizeof(int) * (size_t)train.n);
    double train_loss = 0, test_acc = 0, samples = 0, seconds = 0;
    rc = 0;
    for (int e = 0; e < epochs && rc == 0; e++) {
        data_shuffle(perm, train.n, c.seed, e);
        double loss_sum = 0, t0 = trace_now();
        long correct = 0;
        for (int s = 0; s < steps && rc == 0; s++) {
            double loss;
            int ok;
            rc = trainer_step(t, &train, perm + (size_t)s * c.batch * c.accum, &loss, &ok);
            loss_sum += loss;
            correct += ok;
        }
        double dt = trace_now() - t0;
        if (rc) break;
        samples += (double)steps * c.batch * c.accum;
        seconds += dt;
        double tl;
        int tc;
        if ((rc = trainer_eval(t, &test, &tl, &tc))) break;
        train_loss = loss_sum / steps;
        test_acc = (double)tc / test.n;
        if (rank == 0)
            printf("epoch %d: train_loss=%.4f train_acc=%.4f test_loss=%.4f test_acc=%.4f "
                   "samples_per_s=%.0f (%.2f s)\n",
                   e + 1, train_loss, (double)correct / ((double)steps * c.batch * c.accum), tl,
                   test_acc, (double)steps * c.batch * c.accum / dt, dt);
        fflush(stdout);
    }
    if (rc == 0 && trace_path) rc = trace_write(&tr, world, trace_path);
    if (rc == 0 && rank == 0)
        printf("final: train_loss=%.4f test_acc=%.4f samples_per_s=%.0f\n", train_loss, test_acc,
               samples / seconds);
    free(perm);
    trainer_destroy(t);
    trace_free(&tr);
    if (rc) loom_comm_abort(world);
    else loom_comm_destroy(world);
out_data:
    data_free(&train);
    data_free(&test);
    return rc ? 1 : 0;
}
