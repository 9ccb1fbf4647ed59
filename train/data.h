/* data.h: datasets held in host memory: Fashion-MNIST from the IDX files of Debian's
 * dataset-fashion-mnist package, or a synthetic, learnable classification task. */
#ifndef LOOM_TRAIN_DATA_H
#define LOOM_TRAIN_DATA_H

#include <stddef.h>

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

struct dataset {
    int n, dim, classes;
    float *x;            /* n x dim */
    int *y;              /* n       */
};

/* The train and test split of Fashion-MNIST under dir (the .gz files or unpacked
   ones). Returns 0, or -1 with a message in err naming the package when missing. */
int data_fashion_mnist(const char *dir, struct dataset *train, struct dataset *test, char *err,
                       size_t errlen);
/* n samples of dim features in classes classes: inputs N(0,1) from the seed, labels
   the argmax of a fixed random linear teacher (the same teacher for any n). */
void data_synthetic(struct dataset *d, int n, int dim, int classes, unsigned long long seed,
                    unsigned long long teacher_seed);
void data_free(struct dataset *d);

/* The sample order of an epoch: a permutation of 0..n-1 from the seed and epoch. */
void data_shuffle(int *perm, int n, unsigned long long seed, int epoch);

/* Counter-based random numbers: the i-th draw of stream s (so any slice of a tensor can
   be drawn without drawing the rest). */
double rng_uniform(unsigned long long s, unsigned long long i);     /* [0, 1) */
double rng_normal(unsigned long long s, unsigned long long i);

/* part i of n split into parts as evenly as possible (the first n % parts get one more) */
static inline void split_range(int n, int parts, int i, int *off, int *len)
{
    int q = n / parts, r = n % parts;
    *off = i * q + (i < r ? i : r);
    *len = q + (i < r);
}

#endif
