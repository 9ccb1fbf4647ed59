/* test_train.c: every trainer layout against the serial run (issue 5).
 *
 * Each rank trains the serial model itself (a communicator of one, split off the world)
 * and the layout under test on the same data; it then compares, for the layers it holds,
 * its slice with the serial model's: the first step's gradients layer by layer, every
 * step's loss, the final weights. Where the reduction order is the serial one the
 * comparison is bitwise; elsewhere within fp32 rtol 1e-5.
 *   test_train <case> [cpu|cuda]      cases: see the table below
 */
#include <math.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "trainer.h"

enum { STEPS = 4, NDATA = 960 };

struct tcase {
    const char *name;
    int dp, tp, pp, micro, accum, zero;
    enum schedule_kind sched;
    enum opt_kind opt;
    int bitwise;                /* compare bit for bit                                  */
    const char *against;        /* "serial" (default) or "dp": ZeRO-1 vs the same dp run */
};

static const struct tcase cases[] = {
    { "dp2", 2, 1, 1, 1, 1, 0, SCHED_1F1B, OPT_SGD, 0, 0 },
    { "dp4", 4, 1, 1, 1, 1, 0, SCHED_1F1B, OPT_ADAMW, 0, 0 },
    { "accum3", 1, 1, 1, 1, 3, 0, SCHED_1F1B, OPT_SGD, 0, 0 },
    { "dp2-accum3", 2, 1, 1, 1, 3, 0, SCHED_1F1B, OPT_ADAMW, 0, 0 },
    { "zero-dp2", 2, 1, 1, 1, 1, 1, SCHED_1F1B, OPT_ADAMW, 1, "dp" },
    { "zero-dp4", 4, 1, 1, 1, 1, 1, SCHED_1F1B, OPT_ADAMW, 0, 0 },
    { "tp2", 1, 2, 1, 1, 1, 0, SCHED_1F1B, OPT_SGD, 0, 0 },
    { "tp4", 1, 4, 1, 1, 1, 0, SCHED_1F1B, OPT_ADAMW, 0, 0 },
    { "pp2-m1", 1, 1, 2, 1, 1, 0, SCHED_1F1B, OPT_ADAMW, 1, 0 },
    { "gpipe-p2-m2", 1, 1, 2, 2, 1, 0, SCHED_GPIPE, OPT_SGD, 0, 0 },
    { "gpipe-p2-m5", 1, 1, 2, 5, 1, 0, SCHED_GPIPE, OPT_ADAMW, 0, 0 },
    { "gpipe-p4-m4", 1, 1, 4, 4, 1, 0, SCHED_GPIPE, OPT_SGD, 0, 0 },
    { "gpipe-p4-m7", 1, 1, 4, 7, 1, 0, SCHED_GPIPE, OPT_ADAMW, 0, 0 },
    { "1f1b-p2-m2", 1, 1, 2, 2, 1, 0, SCHED_1F1B, OPT_SGD, 0, 0 },
    { "1f1b-p2-m5", 1, 1, 2, 5, 1, 0, SCHED_1F1B, OPT_ADAMW, 0, 0 },
    { "1f1b-p4-m4", 1, 1, 4, 4, 1, 0, SCHED_1F1B, OPT_SGD, 0, 0 },
    { "1f1b-p4-m7", 1, 1, 4, 7, 1, 0, SCHED_1F1B, OPT_ADAMW, 0, 0 },
    { "dp2-tp2-pp2", 2, 2, 2, 3, 1, 0, SCHED_1F1B, OPT_ADAMW, 0, 0 },
    { "dp2-tp2-pp2-zero-accum2", 2, 2, 2, 2, 2, 1, SCHED_GPIPE, OPT_SGD, 0, 0 },
};

static enum device_kind device = DEV_CPU;

static struct train_cfg make_cfg(const struct tcase *k, int layout)
{
    struct train_cfg c = { .dp = 1, .tp = 1, .pp = 1, .micro = 1, .accum = 1, .batch = 24,
                           .in = 20, .hidden = 32, .depth = 3, .classes = 10, .act = ACT_GELU,
                           .opt = k->opt, .lr = k->opt == OPT_SGD ? 0.05f : 3e-3f,
                           .momentum = 0.9f, .weight_decay = 0.01f,
                           .bucket_bytes = 3000, /* several buckets per rank */
                           .seed = 42, .device = device, .schedule = k->sched };
    if (layout) {
        c.dp = k->dp, c.tp = k->tp, c.pp = k->pp, c.micro = k->micro, c.accum = k->accum;
        c.zero = k->zero;
    } else {
        c.batch *= k->accum;   /* the serial run takes k batches at once */
    }
    return c;
}

/* Weights: |a - b| <= rtol |b| element by element, |b| floored at 1e-2 of the tensor's
   largest magnitude: an element that crossed zero while training carries the absolute
   error of the values it passed through (seen: a bias of 7e-5 in a vector of 2e-2, off
   by 2e-9, AdamW steps of 3e-3 each). Gradients are sums over the batch that cancel far more (an element
   of 1e-4 made of terms of 1e-2), so they are compared norm-wise: |a - b| <= rtol
   max|b|. */
static float max_abs(const float *x, size_t n)
{
    float big = 0;
    for (size_t i = 0; i < n; i++) big = fmaxf(big, fabsf(x[i]));
    return big;
}

/* big: the largest magnitude of the whole serial tensor (of which want may be a slice) */
static int compare(int rank, const char *what, int layer, const float *got, const float *want,
                   size_t n, float big, int bitwise)
{
    float floor_frac = strcmp(what, "gradient") ? 1e-2f : 1.0f;
    for (size_t i = 0; i < n; i++) {
        int ok = bitwise ? memcmp(&got[i], &want[i], sizeof(float)) == 0
                         : fabsf(got[i] - want[i]) <= 1e-5f * fmaxf(fabsf(want[i]), floor_frac * big);
        if (!ok) {
            fprintf(stderr, "rank %d: %s of layer %d, element %zu: %.9g, expected %.9g%s\n", rank,
                    what, layer, i, (double)got[i], (double)want[i], bitwise ? " (bitwise)" : "");
            return 1;
        }
    }
    return 0;
}

/* The slice of the reference layer that layer y of the layout holds. */
static int compare_layer(int rank, const char *what, const struct layer *y, const float *w,
                         const float *b, const float *rw, const float *rb, int bitwise)
{
    float *sw = malloc(sizeof(float) * (size_t)y->lin * y->lout);
    for (int r = 0; r < y->lin; r++)
        memcpy(sw + (size_t)r * y->lout, rw + (size_t)(y->row0 + r) * y->out + y->col0,
               sizeof(float) * y->lout);
    int bad = compare(rank, what, y->l, w, sw, (size_t)y->lin * y->lout,
                      max_abs(rw, (size_t)y->in * y->out), bitwise) ||
              compare(rank, what, y->l, b, rb + y->col0, (size_t)y->lb, max_abs(rb, (size_t)y->out), bitwise);
    free(sw);
    return bad;
}

/* Compare every layer this rank holds in t with the reference trainer ref (which holds
   all layers, or the same slices when it runs the same layout). */
static int compare_model(int rank, const char *what, struct trainer *t, struct trainer *ref,
                         int grads, int same_layout, int bitwise)
{
    int n, nr;
    const struct layer *ly = trainer_layers(t, &n), *rl = trainer_layers(ref, &nr);
    int bad = 0;
    for (int i = 0; i < n && !bad; i++) {
        const struct layer *y = &ly[i], *ry = same_layout ? &rl[i] : &rl[y->l];
        size_t rn = (size_t)ry->lin * ry->lout;
        float *w = malloc(sizeof(float) * (size_t)y->lin * y->lout), *b = malloc(sizeof(float) * y->lb);
        float *rw = malloc(sizeof(float) * rn), *rb = malloc(sizeof(float) * ry->lb);
        trainer_get(t, i, grads, w, b);
        trainer_get(ref, same_layout ? i : y->l, grads, rw, rb);
        if (same_layout)
            bad = compare(rank, what, y->l, w, rw, rn, max_abs(rw, rn), bitwise) ||
                  compare(rank, what, y->l, b, rb, (size_t)y->lb, max_abs(rb, (size_t)y->lb), bitwise);
        else
            bad = compare_layer(rank, what, y, w, b, rw, rb, bitwise);
        free(w), free(b), free(rw), free(rb);
    }
    return bad;
}

static int body(loom_comm_t comm, int rank, int n, void *arg)
{
    const struct tcase *k = arg;
    (void)n;
    struct dataset d;
    data_synthetic(&d, NDATA, 20, 10, 5, 6);
    int *perm = malloc(sizeof(int) * NDATA);
    data_shuffle(perm, NDATA, 9, 0);
    int vs_dp = k->against && !strcmp(k->against, "dp");
    /* the reference: the serial model on a communicator of one, or the plain dp run */
    struct train_cfg rc = make_cfg(k, vs_dp), lc = make_cfg(k, 1);
    if (vs_dp) rc.zero = 0;
    loom_comm_t self = NULL;
    struct trainer *ref = NULL, *t = NULL;
    char err[256];
    if (!vs_dp) CHECK_OK(loom_comm_split(comm, rank, 0, &self));
    if (trainer_create(&ref, &rc, vs_dp ? comm : self, err, sizeof err) ||
        trainer_create(&t, &lc, comm, err, sizeof err)) {
        fprintf(stderr, "rank %d: %s\n", rank, err);
        return 1;
    }
    int bad = 0;
    for (int s = 0; s < STEPS && !bad; s++) {
        const int *idx = perm + (size_t)s * lc.batch * lc.accum;
        double l_ref, l;
        int c_ref, c;
        CHECK(trainer_step(ref, &d, idx, &l_ref, &c_ref) == 0);
        CHECK(trainer_step(t, &d, idx, &l, &c) == 0);
        if (k->bitwise ? l != l_ref : fabs(l - l_ref) > 1e-5 * fabs(l_ref)) {
            fprintf(stderr, "rank %d: step %d loss %.9g, expected %.9g\n", rank, s, l, l_ref);
            bad = 1;
        }
        CHECK_EQ(c, c_ref);
        /* layer by layer: the first step's gradients (ZeRO-1 keeps only unreduced ones) */
        if (s == 0 && !k->zero) bad |= compare_model(rank, "gradient", t, ref, 1, vs_dp, k->bitwise);
        if (rank == 0 && s == 0) printf("%s: step 0 loss %.6f\n", k->name, l);
    }
    if (!bad) bad = compare_model(rank, "final weight", t, ref, 0, vs_dp, k->bitwise);
    double tl, tl_ref;
    int tc, tc_ref;
    CHECK(trainer_eval(ref, &d, &tl_ref, &tc_ref) == 0);
    CHECK(trainer_eval(t, &d, &tl, &tc) == 0);
    if (!bad && fabs(tl - tl_ref) > 1e-5 * fabs(tl_ref)) {
        fprintf(stderr, "rank %d: eval loss %.9g, expected %.9g\n", rank, tl, tl_ref);
        bad = 1;
    }
    /* every rank must agree that every rank passed */
    int32_t any = bad;
    CHECK_OK(loom_allreduce(&any, &any, 1, LOOM_INT32, LOOM_MAX, comm, NULL));
    trainer_destroy(t);
    trainer_destroy(ref);
    if (self) loom_comm_destroy(self);
    data_free(&d);
    free(perm);
    return any != 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_train <case> [cpu|cuda]; cases:");
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) fprintf(stderr, " %s", cases[i].name);
        fprintf(stderr, "\n");
        return 2;
    }
    if (argc > 2 && !strcmp(argv[2], "cuda")) {
        /* probe in a child: the ranks are forked, and CUDA must not be set up before */
        int fd[2];
        char err[256] = "";
        if (pipe(fd)) return 1;
        pid_t pid = fork();
        if (pid == 0) {
            close(fd[0]);
            int ok = backend_cuda(0, err, sizeof err) != NULL;
            if (!ok && write(fd[1], err, strlen(err)) < 0) _exit(1);
            _exit(ok ? 0 : 1);
        }
        close(fd[1]);
        ssize_t got = read(fd[0], err, sizeof err - 1);
        err[got > 0 ? got : 0] = 0;
        close(fd[0]);
        int st = 1;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            printf("SKIP: %s\n", err[0] ? err : "the CUDA probe failed");
            return 77;
        }
        device = DEV_CUDA;
    }
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (!strcmp(argv[1], cases[i].name)) {
            const struct tcase *k = &cases[i];
            int rc = run_ranks(k->name, k->dp * k->tp * k->pp, body, (void *)k, &(struct run_opts){ .timeout_s = 120 });
            printf("%s: %s\n", k->name, rc ? "FAIL" : "ok");
            return rc ? 1 : 0;
        }
    fprintf(stderr, "test_train: unknown case %s\n", argv[1]);
    return 2;
}
