/* data.c: IDX reader (through zlib, so the package's .gz files are read as they are),
 * the synthetic task and counter-based random numbers. */
#include "data.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

double rng_uniform(unsigned long long s, unsigned long long i)
{
    return (double)(splitmix(splitmix(s) ^ i) >> 11) * 0x1.0p-53;
}

double rng_normal(unsigned long long s, unsigned long long i)
{
    double u1 = rng_uniform(s, 2 * i), u2 = rng_uniform(s, 2 * i + 1);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

void data_shuffle(int *perm, int n, unsigned long long seed, int epoch)
{
    for (int i = 0; i < n; i++) perm[i] = i;
    unsigned long long s = splitmix(seed ^ 0x5eed5eedull) + (unsigned long long)epoch;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_uniform(s, (unsigned long long)i) * (i + 1));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void data_free(struct dataset *d)
{
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

void data_synthetic(struct dataset *d, int n, int dim, int classes, unsigned long long seed,
                    unsigned long long teacher_seed)
{
    d->n = n;
    d->dim = dim;
    d->classes = classes;
    d->x = malloc(sizeof(float) * (size_t)n * (size_t)dim);
    d->y = malloc(sizeof(int) * (size_t)n);
    double *teacher = malloc(sizeof(double) * (size_t)classes * dim);
    if (!d->x || !d->y || !teacher) {
        fprintf(stderr, "loom-train: out of memory for %d synthetic samples\n", n);
        exit(1);
    }
    for (size_t i = 0; i < (size_t)classes * dim; i++) teacher[i] = rng_normal(teacher_seed, i);
    for (size_t i = 0; i < (size_t)n * dim; i++) d->x[i] = (float)rng_normal(seed, i);
    for (int i = 0; i < n; i++) {
        int arg = 0;
        double best = -INFINITY;
        for (int c = 0; c < classes; c++) {
            double z = 0;
            for (int k = 0; k < dim; k++) z += d->x[(size_t)i * dim + k] * teacher[(size_t)c * dim + k];
            if (z > best) best = z, arg = c;
        }
        d->y[i] = arg;
    }
    free(teacher);
}

/* Read a whole (possibly gzip'ed) file; "name" is tried as given, then with .gz. */
static unsigned char *slurp(const char *dir, const char *name, size_t *len, char *err, size_t errlen)
{
    char path[4096];
    gzFile f = NULL;
    for (int gz = 0; gz < 2 && !f; gz++) {
        snprintf(path, sizeof path, "%s/%s%s", dir, name, gz ? ".gz" : "");
        f = gzopen(path, "rb");
    }
    if (!f) {
        snprintf(err, errlen,
                 "cannot open %s/%s[.gz]: %s (Fashion-MNIST comes from Debian's package "
                 "dataset-fashion-mnist: apt-get install dataset-fashion-mnist, or pass --data-dir)",
                 dir, name, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (buf && n == cap) buf = realloc(buf, cap *= 2);
        if (!buf) break;
        int got = gzread(f, buf + n, (unsigned)(cap - n));
        if (got <= 0) {
            if (got < 0) {
                snprintf(err, errlen, "%s: read error: %s", path, gzerror(f, &got));
                free(buf);
                buf = NULL;
            }
            break;
        }
        n += (size_t)got;
    }
    gzclose(f);
    if (buf) *len = n;
    else if (!*err) snprintf(err, errlen, "%s: out of memory", path);
    return buf;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int load_split(const char *dir, const char *images, const char *labels, struct dataset *d,
                      char *err, size_t errlen)
{
    size_t ilen = 0, llen = 0;
    unsigned char *im = slurp(dir, images, &ilen, err, errlen), *lb = NULL;
    int rc = -1;
    if (!im) goto out;
    if (!(lb = slurp(dir, labels, &llen, err, errlen))) goto out;
    if (ilen < 16 || be32(im) != 0x803 || llen < 8 || be32(lb) != 0x801) {
        snprintf(err, errlen, "%s/%s: not an IDX image/label pair", dir, images);
        goto out;
    }
    uint32_t n = be32(im + 4), rows = be32(im + 8), cols = be32(im + 12);
    if (be32(lb + 4) != n || ilen < 16 + (size_t)n * rows * cols || llen < 8 + (size_t)n) {
        snprintf(err, errlen, "%s/%s: truncated or mismatched with its labels", dir, images);
        goto out;
    }
    d->n = (int)n;
    d->dim = (int)(rows * cols);
    d->classes = 10;
    d->x = malloc(sizeof(float) * (size_t)n * d->dim);
    d->y = malloc(sizeof(int) * n);
    if (!d->x || !d->y) {
        snprintf(err, errlen, "out of memory for %u images", n);
        data_free(d);
        goto out;
    }
    /* scaled to [0,1], then centred with Fashion-MNIST's pixel mean and deviation */
    for (size_t i = 0; i < (size_t)n * d->dim; i++) d->x[i] = (im[16 + i] / 255.0f - 0.2860f) / 0.3530f;
    for (uint32_t i = 0; i < n; i++) {
        d->y[i] = lb[8 + i];
        if (d->y[i] > 9) {
            snprintf(err, errlen, "%s/%s: label %d out of range", dir, labels, d->y[i]);
            data_free(d);
            goto out;
        }
    }
    rc = 0;
out:
    free(im);
    free(lb);
    return rc;
}

int data_fashion_mnist(const char *dir, struct dataset *train, struct dataset *test, char *err,
                       size_t errlen)
{
    err[0] = 0;
    if (load_split(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", train, err, errlen))
        return -1;
    if (load_split(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", test, err, errlen)) {
        data_free(train);
        return -1;
    }
    return 0;
}
