/* trainer.c: the MLP, its layouts (DP x TP x PP) and its schedules. See trainer.h. */
#include "trainer.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A contiguous range of this rank's layers whose gradients travel together. */
struct bucket {
    int lo, hi;                 /* local layer indices, lo <= hi                        */
    size_t off, plen;           /* region in the flat buffers, padded to dp * 16 floats */
    size_t soff;                /* this rank's shard in the ZeRO-1 buffers (plen / dp)  */
    double launched, seen_done; /* trace: launch time, first time seen complete         */
};

/* The activations of one micro-batch in flight. */
struct slot {
    int rows;
    const int *idx;             /* its samples                                          */
    float *in;                  /* stage input (rows x lin of the first layer)          */
    float **z, **a;             /* per layer: pre-activation, activation (rows x lout)  */
    float *dlog;                /* last stage: gradient of the logits                   */
    int *labels;                /* last stage (host)                                    */
};

struct trainer {
    struct train_cfg c;
    const struct backend *be;
    loom_comm_t world, tp, dp, pp;
    int trank, drank, prank;
    int L;                      /* layers of the serial model                           */
    int nl;
    struct layer *ly;
    size_t nparam, nshard;
    float *param, *grad;        /* flat, this rank's layers                             */
    float *m1, *m2;             /* optimizer state: nparam long, or nshard with ZeRO-1  */
    float *gshard;              /* ZeRO-1: this rank's reduced gradient shard           */
    struct bucket *bk;
    int nb;
    loom_stream_t dps;          /* data-parallel gradient traffic                       */
    struct slot *slot;
    float *gin, *g[2], *dz;     /* backward: received gradient, ping-pong dX, dZ        */
    float *hostx;               /* stage 0: input rows gathered on the host             */
    int mbmax, maxdim;
    long steps;
    /* the current accumulation step */
    const struct dataset *data;
    int final_batch, bwd_done, training, in_dp_pass;
    double loss_sum;
    long correct;
};

#define LOOM_TRY(t, call)                                                                     \
    do {                                                                                      \
        loom_result_t r_ = (call);                                                            \
        if (r_ != LOOM_SUCCESS) {                                                             \
            fprintf(stderr, "loom-train: rank %d: %s: %s: %s\n", loom_comm_rank((t)->world), \
                    #call, loom_strerror(r_), loom_last_error(NULL));                        \
            return -1;                                                                        \
        }                                                                                     \
    } while (0)

static double span_start(const struct trainer *t) { return t->c.trace ? trace_now() : 0; }

static void span_end(struct trainer *t, const char *name, const char *cat, int mb, double t0,
                     size_t bytes)
{
    if (t->c.trace) trace_add(t->c.trace, name, cat, 0, mb, (int)t->steps, t0, trace_now(), bytes);
}

/* ---- the serial model ---- */

void model_layer_shape(const struct train_cfg *c, int l, int *in, int *out)
{
    *in = l == 0 ? c->in : c->hidden;
    *out = l == c->depth ? c->classes : c->hidden;
}

void model_init_layer(unsigned long long seed, int l, int in, int out, float *w, float *b)
{
    /* He initialisation; small non-zero biases so a misplaced bias slice shows */
    double scale = sqrt(2.0 / in);
    unsigned long long s = seed * 1000003ull + (unsigned long long)l * 2;
    for (size_t i = 0; i < (size_t)in * out; i++) w[i] = (float)(scale * rng_normal(s, i));
    for (int j = 0; j < out; j++) b[j] = (float)(0.01 * rng_normal(s + 1, (unsigned long long)j));
}

/* ---- layout ---- */

/* Blocks [*b0, *b1) of stage s: the contiguous split of the blocks into pp stages whose
   largest stage costs least, by dynamic programming over split points (ties go to the
   earliest split). A layer costs its weights times its gemms: forward, weight gradient,
   input gradient; layer 0 needs no input gradient. */
static void stage_blocks(const struct train_cfg *c, int nblk, int s, int *b0, int *b1)
{
    int per = c->tp > 1 ? 2 : 1, p = c->pp;
    double *pre = calloc((size_t)nblk + 1, sizeof *pre);
    double *best = malloc(sizeof *best * (size_t)(p + 1) * (nblk + 1));
    int *cut = malloc(sizeof *cut * (size_t)(p + 1) * (nblk + 1));
    for (int b = 0; b < nblk; b++) {
        pre[b + 1] = pre[b];
        for (int l = b * per; l < (b + 1) * per && l <= c->depth; l++) {
            int in, out;
            model_layer_shape(c, l, &in, &out);
            pre[b + 1] += ((double)in * out + out) * (l == 0 ? 2 : 3);
        }
    }
#define BEST(k, n) best[(size_t)(k) * (nblk + 1) + (n)]
#define CUT(k, n) cut[(size_t)(k) * (nblk + 1) + (n)]
    /* BEST(k, n): the smallest largest stage when the first n blocks form k stages */
    for (int n = 0; n <= nblk; n++) BEST(1, n) = pre[n], CUT(1, n) = 0;
    for (int k = 2; k <= p; k++)
        for (int n = k; n <= nblk; n++) {
            BEST(k, n) = INFINITY;
            for (int j = k - 1; j < n; j++) {
                double v = fmax(BEST(k - 1, j), pre[n] - pre[j]);
                if (v < BEST(k, n)) BEST(k, n) = v, CUT(k, n) = j;
            }
        }
    int hi = nblk;
    for (int k = p; k >= 1; k--) {
        int lo = CUT(k, hi);
        if (k - 1 == s) *b0 = lo, *b1 = hi;
        hi = lo;
    }
#undef BEST
#undef CUT
    free(pre), free(best), free(cut);
}

static int setup_layers(struct trainer *t, char *err, size_t errlen)
{
    const struct train_cfg *c = &t->c;
    int L = t->L = c->depth + 1, tp = c->tp;
    /* blocks: tp pairs (a last unpaired layer alone), or single layers when tp = 1 */
    int nblk = tp > 1 ? (L + 1) / 2 : L;
    if (nblk < c->pp) {
        snprintf(err, errlen, "%d pipeline stages need at least %d %s; the model has %d "
                 "(raise --depth)", c->pp, c->pp, tp > 1 ? "column/row layer pairs" : "layers", nblk);
        return -1;
    }
    if (tp > 1 && c->hidden % tp) {
        snprintf(err, errlen, "--hidden %d is not a multiple of --tp %d", c->hidden, tp);
        return -1;
    }
    int b0 = 0, b1 = 0;
    stage_blocks(c, nblk, t->prank, &b0, &b1);
    int l0 = tp > 1 ? 2 * b0 : b0, l1 = tp > 1 ? 2 * b1 : b1;
    if (l1 > L) l1 = L;
    t->nl = l1 - l0;
    t->ly = calloc((size_t)t->nl, sizeof *t->ly);
    if (!t->ly) return snprintf(err, errlen, "out of memory"), -1;
    t->maxdim = 0;
    for (int i = 0; i < t->nl; i++) {
        struct layer *y = &t->ly[i];
        y->l = l0 + i;
        model_layer_shape(c, y->l, &y->in, &y->out);
        y->kind = tp == 1 || (y->l == L - 1 && y->l % 2 == 0) ? LAYER_FULL
                  : y->l % 2 == 0                           ? LAYER_COL
                                                            : LAYER_ROW;
        y->lin = y->kind == LAYER_ROW ? y->in / tp : y->in;
        y->lout = y->kind == LAYER_COL ? y->out / tp : y->out;
        y->row0 = y->kind == LAYER_ROW ? t->trank * y->lin : 0;
        y->col0 = y->kind == LAYER_COL ? t->trank * y->lout : 0;
        y->lb = y->lout;
        if (y->lin > t->maxdim) t->maxdim = y->lin;
        if (y->lout > t->maxdim) t->maxdim = y->lout;
    }
    return 0;
}

/* Buckets from the last layer down (the order backward finishes them), each closed once
   it holds bucket_bytes; laid out in the flat buffers in layer order. */
static int setup_buckets(struct trainer *t)
{
    size_t cap = t->c.bucket_bytes / sizeof(float), pad = (size_t)t->c.dp * 16;
    t->bk = calloc((size_t)t->nl, sizeof *t->bk);
    if (!t->bk) return -1;
    int nb = 0;
    size_t fill = 0;
    for (int i = t->nl - 1; i >= 0; i--) {
        if (fill == 0) t->bk[nb].hi = i;
        t->bk[nb].lo = i;
        fill += (size_t)t->ly[i].lin * t->ly[i].lout + (size_t)t->ly[i].lb;
        if (fill >= cap || i == 0) nb++, fill = 0;
    }
    t->nb = nb;
    size_t off = 0, soff = 0;
    for (int k = nb - 1; k >= 0; k--) {       /* lowest layers first in memory */
        struct bucket *b = &t->bk[k];
        b->off = off;
        for (int i = b->lo; i <= b->hi; i++) {
            t->ly[i].woff = off;
            off += (size_t)t->ly[i].lin * t->ly[i].lout;
            t->ly[i].boff = off;
            off += (size_t)t->ly[i].lb;
        }
        b->plen = (off - b->off + pad - 1) / pad * pad;
        off = b->off + b->plen;
        b->soff = soff;
        soff += b->plen / (size_t)t->c.dp;
    }
    t->nparam = off;
    t->nshard = soff;
    return 0;
}

static int alloc_buffers(struct trainer *t)
{
    const struct backend *be = t->be;
    int m = t->c.micro, mb = t->mbmax;
    size_t nst = t->c.zero ? t->nshard : t->nparam;
    t->param = be->alloc(t->nparam);
    t->grad = be->alloc(t->nparam);
    t->m1 = be->alloc(nst);
    t->m2 = be->alloc(nst);
    t->gshard = t->c.zero ? be->alloc(t->nshard) : NULL;
    t->gin = be->alloc((size_t)mb * t->maxdim);
    t->g[0] = be->alloc((size_t)mb * t->maxdim);
    t->g[1] = be->alloc((size_t)mb * t->maxdim);
    t->dz = be->alloc((size_t)mb * t->maxdim);
    t->hostx = malloc(sizeof(float) * (size_t)mb * t->ly[0].lin);
    t->slot = calloc((size_t)m, sizeof *t->slot);
    if (!t->param || !t->grad || !t->m1 || !t->m2 || (t->c.zero && !t->gshard) || !t->gin ||
        !t->g[0] || !t->g[1] || !t->dz || !t->hostx || !t->slot)
        return -1;
    for (int j = 0; j < m; j++) {
        struct slot *s = &t->slot[j];
        s->in = be->alloc((size_t)mb * t->ly[0].lin);
        s->z = calloc((size_t)t->nl, sizeof *s->z);
        s->a = calloc((size_t)t->nl, sizeof *s->a);
        s->labels = malloc(sizeof(int) * (size_t)mb);
        if (!s->in || !s->z || !s->a || !s->labels) return -1;
        for (int i = 0; i < t->nl; i++) {
            if (!(s->z[i] = be->alloc((size_t)mb * t->ly[i].lout))) return -1;
            if (t->ly[i].l < t->L - 1 && !(s->a[i] = be->alloc((size_t)mb * t->ly[i].lout))) return -1;
        }
        if (t->ly[t->nl - 1].l == t->L - 1 && !(s->dlog = be->alloc((size_t)mb * t->c.classes)))
            return -1;
    }
    return 0;
}

/* Every rank draws the serial layer and keeps its slice. */
static int init_params(struct trainer *t)
{
    for (int i = 0; i < t->nl; i++) {
        const struct layer *y = &t->ly[i];
        float *w = malloc(sizeof(float) * (size_t)y->in * y->out), *b = malloc(sizeof(float) * y->out);
        float *lw = malloc(sizeof(float) * (size_t)y->lin * y->lout);
        if (!w || !b || !lw) return free(w), free(b), free(lw), -1;
        model_init_layer(t->c.seed, y->l, y->in, y->out, w, b);
        for (int r = 0; r < y->lin; r++)
            memcpy(lw + (size_t)r * y->lout, w + (size_t)(y->row0 + r) * y->out + y->col0,
                   sizeof(float) * y->lout);
        t->be->to_dev(t->param + y->woff, lw, (size_t)y->lin * y->lout);
        t->be->to_dev(t->param + y->boff, b + y->col0, (size_t)y->lb);
        free(w), free(b), free(lw);
    }
    return 0;
}

int trainer_create(struct trainer **out, const struct train_cfg *cfg, loom_comm_t world, char *err,
                   size_t errlen)
{
    *out = NULL;
    int n = loom_comm_size(world), rank = loom_comm_rank(world);
    const struct train_cfg *c = cfg;
    if (c->dp < 1 || c->tp < 1 || c->pp < 1 || c->dp * c->tp * c->pp != n) {
        snprintf(err, errlen, "--dp %d x --tp %d x --pp %d must equal the %d ranks", c->dp, c->tp,
                 c->pp, n);
        return -1;
    }
    if (c->micro < 1 || c->accum < 1 || c->batch < c->dp * c->micro || c->depth < 0 ||
        c->in < 1 || c->hidden < 1 || c->classes < 2) {
        snprintf(err, errlen, "bad sizes: need micro-batches >= 1, grad-accum >= 1, batch >= dp x "
                 "micro-batches (%d), depth >= 0, dims >= 1, classes >= 2", c->dp * c->micro);
        return -1;
    }
    struct trainer *t = calloc(1, sizeof *t);
    if (!t) return snprintf(err, errlen, "out of memory"), -1;
    t->c = *c;
    t->world = world;
    t->trank = rank % c->tp;
    t->drank = rank / c->tp % c->dp;
    t->prank = rank / (c->tp * c->dp);
    if (c->device == DEV_CUDA) t->be = backend_cuda(c->gpu, err, errlen);
    else t->be = backend_cpu();
    if (!t->be) goto fail;
    if (setup_layers(t, err, errlen)) goto fail;
    int soff;
    split_range(c->batch, c->dp, 0, &soff, &t->mbmax);
    split_range(t->mbmax, c->micro, 0, &soff, &t->mbmax);
    if (setup_buckets(t) || alloc_buffers(t) || init_params(t)) {
        snprintf(err, errlen, "out of memory for the model's buffers");
        goto fail;
    }
    if (c->trace) c->trace->rank = rank, c->trace->stage = t->prank;
    /* Megatron's order: tp fastest, then dp, then pp */
    loom_result_t r;
    if ((r = loom_comm_split(world, t->drank + c->dp * t->prank, t->trank, &t->tp)) ||
        (r = loom_comm_split(world, t->trank + c->tp * t->prank, t->drank, &t->dp)) ||
        (r = loom_comm_split(world, t->trank + c->tp * t->drank, t->prank, &t->pp)) ||
        (r = loom_stream_create(&t->dps))) {
        snprintf(err, errlen, "making the tp/dp/pp groups: %s: %s", loom_strerror(r),
                 loom_last_error(world));
        goto fail;
    }
    *out = t;
    return 0;
fail:
    trainer_destroy(t);
    return -1;
}

void trainer_destroy(struct trainer *t)
{
    if (!t) return;
    if (t->dps) loom_stream_destroy(t->dps);
    if (t->tp) loom_comm_destroy(t->tp);
    if (t->dp) loom_comm_destroy(t->dp);
    if (t->pp) loom_comm_destroy(t->pp);
    const struct backend *be = t->be;
    if (be) {
        float *bufs[] = { t->param, t->grad, t->m1, t->m2, t->gshard, t->gin, t->g[0], t->g[1], t->dz };
        for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
            if (bufs[i]) be->release(bufs[i]);
        for (int j = 0; t->slot && j < t->c.micro; j++) {
            struct slot *s = &t->slot[j];
            if (s->in) be->release(s->in);
            if (s->dlog) be->release(s->dlog);
            for (int i = 0; i < t->nl; i++) {
                if (s->z && s->z[i]) be->release(s->z[i]);
                if (s->a && s->a[i]) be->release(s->a[i]);
            }
            free(s->z), free(s->a), free(s->labels);
        }
    }
    free(t->slot), free(t->hostx), free(t->ly), free(t->bk);
    free(t);
}

const struct layer *trainer_layers(const struct trainer *t, int *n)
{
    *n = t->nl;
    return t->ly;
}

void trainer_get(const struct trainer *t, int i, int grads, float *w, float *b)
{
    const struct layer *y = &t->ly[i];
    const float *src = grads ? t->grad : t->param;
    t->be->sync();
    t->be->to_host(w, src + y->woff, (size_t)y->lin * y->lout);
    t->be->to_host(b, src + y->boff, (size_t)y->lb);
}

/* ---- one micro-batch through this stage ---- */

static int first_stage(const struct trainer *t) { return t->prank == 0; }
static int last_stage(const struct trainer *t) { return t->prank == t->c.pp - 1; }
static size_t out_count(const struct trainer *t, const struct slot *s)
{
    return (size_t)s->rows * t->ly[t->nl - 1].lout;
}
static size_t in_count(const struct trainer *t, const struct slot *s)
{
    return (size_t)s->rows * t->ly[0].lin;
}

static int tp_allreduce(struct trainer *t, float *buf, size_t count, const char *what, int mb)
{
    double t0 = span_start(t);
    LOOM_TRY(t, loom_allreduce(buf, buf, count, LOOM_FLOAT32, LOOM_SUM, t->tp, NULL));
    span_end(t, what, "tp", mb, t0, count * sizeof(float));
    return 0;
}

static int forward(struct trainer *t, int j)
{
    struct slot *s = &t->slot[j];
    const struct backend *be = t->be;
    if (s->rows == 0) return 0;   /* the tail of an evaluation; the same on every rank */
    double t0 = span_start(t);
    const float *x = s->in;
    for (int i = 0; i < t->nl; i++) {
        const struct layer *y = &t->ly[i];
        float *z = s->z[i];
        be->gemm(0, 0, s->rows, y->lout, y->lin, 1.0f, x, y->lin, t->param + y->woff, y->lout,
                 0.0f, z, y->lout);
        /* g: the row-parallel layer's partial sums meet before its (replicated) bias */
        if (y->kind == LAYER_ROW && tp_allreduce(t, z, (size_t)s->rows * y->lout, "allreduce g", j))
            return -1;
        be->add_bias(z, t->param + y->boff, s->rows, y->lout);
        if (y->l < t->L - 1) {
            be->act_fwd(t->c.act, s->a[i], z, (size_t)s->rows * y->lout);
            x = s->a[i];
        } else {
            /* every tp rank needs the logits' gradient; finish_step counts one loss per batch row */
            int ok;
            float scale = 1.0f / ((float)t->c.batch * (float)t->c.accum);
            t->loss_sum += be->xent(z, s->labels, s->rows, y->lout, scale, t->training ? s->dlog : NULL, &ok);
            t->correct += ok;
        }
    }
    span_end(t, "F", t->training ? "fwd" : "eval", j, t0, 0);
    return 0;
}

static void launch_check_done(struct trainer *t)
{
    if (!t->c.trace || loom_stream_query(t->dps) != LOOM_SUCCESS) return;
    double now = trace_now();
    for (int k = 0; k < t->nb; k++)
        if (t->bk[k].launched > 0 && t->bk[k].seen_done == 0) t->bk[k].seen_done = now;
}

static int launch_bucket(struct trainer *t, struct bucket *b)
{
    if (t->c.trace) b->launched = trace_now(), b->seen_done = 0;
    if (t->c.zero)
        LOOM_TRY(t, loom_reduce_scatter(t->grad + b->off, t->gshard + b->soff, b->plen / t->c.dp,
                                        LOOM_FLOAT32, LOOM_SUM, t->dp, t->dps));
    else
        LOOM_TRY(t, loom_allreduce(t->grad + b->off, t->grad + b->off, b->plen, LOOM_FLOAT32,
                                   LOOM_SUM, t->dp, t->dps));
    return 0;
}

/* Backward of micro-batch j; dout is the gradient of the stage's output (NULL on the
   last stage). Returns the gradient of the stage's input in *din (NULL on stage 0). */
static int backward(struct trainer *t, int j, const float *dout, float **din)
{
    struct slot *s = &t->slot[j];
    const struct backend *be = t->be;
    double t0 = span_start(t);
    int last_pass = t->final_batch && t->bwd_done == t->c.micro - 1;
    const float *dcur = dout;
    int ping = 0;
    *din = NULL;
    for (int i = t->nl - 1; i >= 0; i--) {
        const struct layer *y = &t->ly[i];
        const float *x = i ? s->a[i - 1] : s->in, *dz = s->dlog;
        size_t n = (size_t)s->rows * y->lout;
        if (y->l < t->L - 1) {
            be->act_bwd(t->c.act, t->dz, dcur, s->z[i], n);
            dz = t->dz;
        }
        be->gemm(1, 0, y->lin, y->lout, s->rows, 1.0f, x, y->lin, dz, y->lout, 1.0f,
                 t->grad + y->woff, y->lout);
        be->bias_grad(t->grad + y->boff, dz, s->rows, y->lb);
        if (y->l > 0) {
            float *dx = t->g[ping];
            ping ^= 1;
            be->gemm(0, 1, s->rows, y->lin, y->lout, 1.0f, dz, y->lout, t->param + y->woff, y->lout,
                     0.0f, dx, y->lin);
            /* f: the column-parallel layer's input gradient is a partial sum */
            if (y->kind == LAYER_COL && tp_allreduce(t, dx, (size_t)s->rows * y->lin, "allreduce f", j))
                return -1;
            dcur = dx;
        }
        if (last_pass && (t->c.dp > 1 || t->c.zero)) {
            for (int k = 0; k < t->nb; k++)
                if (t->bk[k].lo == i) {
                    be->sync();
                    if (launch_bucket(t, &t->bk[k])) return -1;
                }
            launch_check_done(t);
        }
    }
    t->bwd_done++;
    *din = first_stage(t) ? NULL : (float *)dcur;
    span_end(t, "B", "bwd", j, t0, 0);
    return 0;
}

/* ---- pipeline communication (pp group ranks are the stages) ---- */

static void load_inputs(struct trainer *t, int j)
{
    struct slot *s = &t->slot[j];
    const struct dataset *d = t->data;
    if (first_stage(t)) {
        for (int r = 0; r < s->rows; r++)
            memcpy(t->hostx + (size_t)r * d->dim, d->x + (size_t)s->idx[r] * d->dim, sizeof(float) * d->dim);
        t->be->to_dev(s->in, t->hostx, (size_t)s->rows * d->dim);
    }
    if (last_stage(t))
        for (int r = 0; r < s->rows; r++) s->labels[r] = d->y[s->idx[r]];
}

/* The sends and receives of one schedule point, fused in one loom group so that two
   stages exchanging in both directions cannot wait on each other. */
struct xfer {
    float *send_act;  int send_act_mb;   /* to the next stage       */
    float *recv_act;  int recv_act_mb;   /* from the previous stage */
    float *send_grad; int send_grad_mb;  /* to the previous stage   */
    float *recv_grad; int recv_grad_mb;  /* from the next stage     */
};

static int exchange(struct trainer *t, const struct xfer *x)
{
    /* activations go to the next stage, gradients to the previous one */
    const struct { float *buf; int mb; bool send, to_next; const char *what; } op[4] = {
        { x->send_act, x->send_act_mb, true, true, "send act" },
        { x->recv_act, x->recv_act_mb, false, false, "recv act" },
        { x->send_grad, x->send_grad_mb, true, false, "send grad" },
        { x->recv_grad, x->recv_grad_mb, false, true, "recv grad" },
    };
    char name[64] = "";   /* what moved, for the trace: "send act + recv grad" */
    size_t bytes = 0;
    double t0 = span_start(t);
    LOOM_TRY(t, loom_group_start());
    for (int i = 0; i < 4; i++) {
        const struct slot *sl = &t->slot[op[i].mb];
        if (!op[i].buf || (op[i].to_next ? last_stage(t) : first_stage(t)) || sl->rows == 0) continue;
        size_t n = op[i].to_next ? out_count(t, sl) : in_count(t, sl);
        int peer = t->prank + (op[i].to_next ? 1 : -1);
        LOOM_TRY(t, op[i].send ? loom_send(op[i].buf, n, LOOM_FLOAT32, peer, t->pp, NULL)
                               : loom_recv(op[i].buf, n, LOOM_FLOAT32, peer, t->pp, NULL));
        if (t->c.trace)
            snprintf(name + strlen(name), sizeof name - strlen(name), "%s%s", name[0] ? " + " : "", op[i].what);
        bytes += n * sizeof(float);
    }
    LOOM_TRY(t, loom_group_end());
    if (bytes) span_end(t, name, "pp", -1, t0, bytes);
    return 0;
}

static int recv_forward(struct trainer *t, int j)
{
    load_inputs(t, j);
    return exchange(t, &(struct xfer){ .recv_act = t->slot[j].in, .recv_act_mb = j });
}

static float *stage_out(struct trainer *t, int j) { return t->slot[j].a[t->nl - 1]; }

static int send_forward(struct trainer *t, int j)
{
    return exchange(t, &(struct xfer){ .send_act = last_stage(t) ? NULL : stage_out(t, j), .send_act_mb = j });
}

static int backward_step(struct trainer *t, int j, float **din)
{
    return backward(t, j, last_stage(t) ? NULL : t->gin, din);
}

/* One micro-batch's backward alone: its gradient in, backward, the input's gradient out
   (GPipe's backward phase, 1F1B's cool-down). */
static int recv_backward_send(struct trainer *t, int j)
{
    float *din;
    return exchange(t, &(struct xfer){ .recv_grad = t->gin, .recv_grad_mb = j }) || backward_step(t, j, &din) ||
           exchange(t, &(struct xfer){ .send_grad = din, .send_grad_mb = j }) ? -1 : 0;
}

static int run_gpipe(struct trainer *t)
{
    int m = t->c.micro;
    for (int j = 0; j < m; j++)
        if (recv_forward(t, j) || forward(t, j) || send_forward(t, j)) return -1;
    if (!t->training) return 0;
    for (int j = 0; j < m; j++)
        if (recv_backward_send(t, j)) return -1;
    return 0;
}

/* 1F1B (PipeDream-flush): stage s runs p - s - 1 warm-up forwards, then alternates one
   forward and one backward, then drains the remaining backwards. At most p - s
   micro-batches are in flight per stage. */
static int run_1f1b(struct trainer *t)
{
    int m = t->c.micro, warm = t->c.pp - t->prank - 1;
    if (warm > m) warm = m;
    int rest = m - warm;
    for (int j = 0; j < warm; j++)
        if (recv_forward(t, j) || forward(t, j) || send_forward(t, j)) return -1;
    if (rest > 0 && recv_forward(t, warm)) return -1;
    for (int i = 0; i < rest; i++) {
        int jf = warm + i, jb = i;
        float *din;
        if (forward(t, jf) ||
            exchange(t, &(struct xfer){ .send_act = last_stage(t) ? NULL : stage_out(t, jf),
                                        .send_act_mb = jf, .recv_grad = t->gin, .recv_grad_mb = jb }) ||
            backward_step(t, jb, &din))
            return -1;
        if (i == rest - 1) {
            if (exchange(t, &(struct xfer){ .send_grad = din, .send_grad_mb = jb })) return -1;
        } else {
            load_inputs(t, jf + 1);
            if (exchange(t, &(struct xfer){ .send_grad = din, .send_grad_mb = jb,
                                            .recv_act = t->slot[jf + 1].in, .recv_act_mb = jf + 1 }))
                return -1;
        }
    }
    for (int i = 0; i < warm; i++)
        if (recv_backward_send(t, rest + i)) return -1;
    return 0;
}

/* One batch: this dp rank's share of the global batch idx[0..batch), in micro-batches. */
static int run_batch(struct trainer *t, const int *idx, int batch)
{
    int off, n;
    split_range(batch, t->c.dp, t->drank, &off, &n);
    for (int j = 0; j < t->c.micro; j++) {
        int o;
        split_range(n, t->c.micro, j, &o, &t->slot[j].rows);
        t->slot[j].idx = idx + off + o;
    }
    t->bwd_done = 0;
    if (!t->training || t->c.schedule == SCHED_GPIPE) return run_gpipe(t);
    return run_1f1b(t);
}

static void optimizer_update(struct trainer *t, float *p, const float *g, float *m1, float *m2, size_t n)
{
    const struct train_cfg *c = &t->c;
    long step = t->steps + 1;   /* the update being made, counted from 1 */
    float lr = c->lr;
    if (c->decay_steps > 0)
        lr *= 0.5f * (1.0f + cosf((float)M_PI * (float)(step < c->decay_steps ? step : c->decay_steps) /
                                  (float)c->decay_steps));
    if (c->opt == OPT_SGD) {
        t->be->sgd(p, g, m1, n, lr, c->momentum);
    } else {
        const float b1 = 0.9f, b2 = 0.999f;
        float bc1 = 1.0f - powf(b1, (float)step), bc2 = 1.0f - powf(b2, (float)step);
        t->be->adamw(p, g, m1, m2, n, lr, b1, b2, 1e-8f, c->weight_decay, bc1, bc2);
    }
}

static void trace_buckets(struct trainer *t, double synced)
{
    if (!t->c.trace) return;
    double prev = 0;
    for (int k = 0; k < t->nb; k++) {   /* launched (and run by the stream) in index order */
        struct bucket *b = &t->bk[k];
        if (b->launched == 0) continue;
        double done = b->seen_done ? b->seen_done : synced, start = b->launched > prev ? b->launched : prev;
        trace_add(t->c.trace, t->c.zero ? "reduce_scatter bucket" : "allreduce bucket", "dp", 1, -1,
                  (int)t->steps, start, done, b->plen * sizeof(float));
        prev = done;
        b->launched = 0;
    }
}

static int finish_step(struct trainer *t, double *loss, int *correct, int samples)
{
    double tot[2] = { t->loss_sum, (double)t->correct };
    if (t->trank != 0 || !last_stage(t)) tot[0] = tot[1] = 0;
    LOOM_TRY(t, loom_allreduce(tot, tot, 2, LOOM_FLOAT64, LOOM_SUM, t->world, NULL));
    *loss = tot[0] / samples;
    *correct = (int)tot[1];
    return 0;
}

int trainer_step(struct trainer *t, const struct dataset *d, const int *idx, double *loss, int *correct)
{
    const struct train_cfg *c = &t->c;
    if (d->dim != c->in || d->classes != c->classes) {
        fprintf(stderr, "loom-train: the data has %d features and %d classes, the model %d and %d\n",
                d->dim, d->classes, c->in, c->classes);
        return -1;
    }
    t->be->zero(t->grad, t->nparam);
    t->data = d;
    t->training = 1;
    t->loss_sum = 0;
    t->correct = 0;
    for (int a = 0; a < c->accum; a++) {
        t->final_batch = a == c->accum - 1;
        if (run_batch(t, idx + (size_t)a * c->batch, c->batch)) return -1;
    }
    int dp_comm = c->dp > 1 || c->zero;
    double t0 = span_start(t);
    if (dp_comm) {
        LOOM_TRY(t, loom_stream_sync(t->dps));
        trace_buckets(t, span_start(t));
    }
    if (!c->zero) {
        optimizer_update(t, t->param, t->grad, t->m1, t->m2, t->nparam);
    } else {
        /* ZeRO-1: update the owned shard of every bucket, then gather the parameters */
        for (int k = t->nb - 1; k >= 0; k--) {
            struct bucket *b = &t->bk[k];
            size_t sl = b->plen / (size_t)c->dp;
            optimizer_update(t, t->param + b->off + (size_t)t->drank * sl, t->gshard + b->soff,
                             t->m1 + b->soff, t->m2 + b->soff, sl);
        }
        t->be->sync();
        for (int k = t->nb - 1; k >= 0; k--) {
            struct bucket *b = &t->bk[k];
            size_t sl = b->plen / (size_t)c->dp;
            LOOM_TRY(t, loom_allgather(t->param + b->off + (size_t)t->drank * sl, t->param + b->off,
                                       sl, LOOM_FLOAT32, t->dp, t->dps));
        }
        LOOM_TRY(t, loom_stream_sync(t->dps));
    }
    t->be->sync();
    span_end(t, dp_comm ? "dp wait + optimizer" : "optimizer", "opt", -1, t0, 0);
    t->steps++;
    return finish_step(t, loss, correct, c->batch * c->accum);
}

int trainer_eval(struct trainer *t, const struct dataset *d, double *loss, int *correct)
{
    t->data = d;
    t->training = 0;
    t->loss_sum = 0;
    t->correct = 0;
    int *idx = malloc(sizeof(int) * (size_t)t->c.batch);
    if (!idx) return -1;
    int rc = 0;
    for (int start = 0; start < d->n && rc == 0; start += t->c.batch) {
        int n = d->n - start < t->c.batch ? d->n - start : t->c.batch;
        for (int i = 0; i < n; i++) idx[i] = start + i;
        rc = run_batch(t, idx, n);
    }
    free(idx);
    return rc ? -1 : finish_step(t, loss, correct, d->n);
}
