/* trainer.h: an MLP trained with data, tensor and pipeline parallelism over loom.
 *
 * The model: depth hidden layers of width hidden (Linear + ReLU or GELU) and a linear
 * classifier, softmax cross-entropy, float32. Its weights are defined once by the seed
 * (the serial model); every layout holds slices of those same weights.
 *
 * Layout (Megatron's order): world rank = tp_rank + tp * (dp_rank + dp * pp_rank).
 *  - tensor parallel: layers (0,1), (2,3), ... are column-parallel / row-parallel pairs
 *    (Megatron's f and g: one all-reduce in the pair's forward, one in its backward);
 *    a last unpaired layer is replicated over the tp group.
 *  - pipeline parallel: the pairs (single layers when tp = 1) are split into pp
 *    contiguous stages; m micro-batches per batch, GPipe or 1F1B; activations and their
 *    gradients move with loom_send/loom_recv.
 *  - data parallel: each dp rank takes its share of every global batch; gradients are
 *    all-reduced in buckets launched on a loom stream during the last backward pass,
 *    or (ZeRO-1) reduce-scattered, the owned shard updated, the parameters all-gathered.
 *  - gradient accumulation over k batches communicates only after the k-th.
 * The loss of a step is the mean over its k x batch samples, whatever the layout.
 */
#ifndef LOOM_TRAIN_TRAINER_H
#define LOOM_TRAIN_TRAINER_H

#include <stddef.h>

#include "data.h"
#include "loom.h"
#include "tensor.h"
#include "trace.h"

enum schedule_kind { SCHED_GPIPE, SCHED_1F1B };
enum opt_kind { OPT_SGD, OPT_ADAMW };
enum layer_kind { LAYER_FULL, LAYER_COL, LAYER_ROW };

struct train_cfg {
    int dp, tp, pp;
    int micro;                  /* micro-batches per batch (m)                        */
    int accum;                  /* batches per optimizer step (k)                     */
    int zero;                   /* 1: ZeRO-1                                          */
    enum schedule_kind schedule;
    int batch;                  /* global batch (B)                                   */
    int in, hidden, depth, classes;
    enum act_kind act;
    enum opt_kind opt;
    float lr, momentum, weight_decay;
    long decay_steps;           /* > 0: cosine decay of lr to 0 over this many steps  */
    size_t bucket_bytes;
    unsigned long long seed;
    enum device_kind device;
    int gpu;                    /* CUDA device of this rank                           */
    struct trace *trace;        /* NULL: no trace                                     */
};

/* One layer of this rank: its place in the serial model and its local slice. */
struct layer {
    int l;                      /* index in the serial model                          */
    enum layer_kind kind;
    int in, out;                /* serial shape of W (in x out)                       */
    int lin, lout;              /* local shape                                        */
    int row0, col0;             /* the local W is serial W[row0.., col0..]            */
    int lb;                     /* local bias length (serial b[col0 .. col0+lb))      */
    size_t woff, boff;          /* offsets in the flat parameter/gradient buffers     */
};

struct trainer;

/* Collective over world: splits it into the tp, dp and pp groups. Returns 0, or -1 with
   the reason in err (bad layout, loom failure). */
int trainer_create(struct trainer **t, const struct train_cfg *cfg, loom_comm_t world, char *err,
                   size_t errlen);
void trainer_destroy(struct trainer *t);

/* One optimizer step over samples idx[0 .. accum * batch) of d. loss (mean) and correct
   are the same on every rank. Returns 0, or -1 after printing the loom error. */
int trainer_step(struct trainer *t, const struct dataset *d, const int *idx, double *loss,
                 int *correct);
/* Forward only over all of d, in batches of cfg.batch: mean loss and correct count. */
int trainer_eval(struct trainer *t, const struct dataset *d, double *loss, int *correct);

/* This rank's layers (first stage layer first). */
const struct layer *trainer_layers(const struct trainer *t, int *n);
/* Host copies of layer i's local W (lin x lout) and b (lb): parameters or the last
   step's gradients (after its all-reduce; with ZeRO-1 before the reduce-scatter). */
void trainer_get(const struct trainer *t, int i, int grads, float *w, float *b);

/* The serial model's initial W (in x out) and b of layer l, from the seed. */
void model_init_layer(unsigned long long seed, int l, int in, int out, float *w, float *b);
/* Shape of serial layer l */
void model_layer_shape(const struct train_cfg *c, int l, int *in, int *out);

#endif
