/* auth.h: what authentication needs: SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104),
 * random bytes and a constant-time comparison. The handshakes (runtime/gate.c) prove a
 * peer holds the job's secret without sending it; keys of communicators and jobs are
 * derived with the HMAC. Not a crypto library: no other hashes, no ciphers. */
#ifndef LOOM_AUTH_H
#define LOOM_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32

struct sha256 {
    uint32_t h[8];
    uint64_t bytes;          /* message length so far */
    uint8_t buf[64];         /* the partial block      */
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final(struct sha256 *s, uint8_t out[SHA256_BYTES]);

/* HMAC over the concatenation of up to n pieces (piece i: ptr[i], len[i]). */
void hmac_sha256(const uint8_t *key, size_t keylen, int n, const void *const *ptr, const size_t *len,
                 uint8_t out[SHA256_BYTES]);

/* Constant-time comparison of n bytes. */
bool auth_equal(const uint8_t *a, const uint8_t *b, size_t n);
/* n bytes from exactly 2n hex digits (either case); false on anything else. */
bool auth_hex_decode(const char *s, uint8_t *out, size_t n);
/* n bytes as 2n lowercase hex digits and a NUL. */
void auth_hex_encode(const uint8_t *in, size_t n, char *out);
/* len bytes from getrandom(2); false if the kernel would not give them. */
bool auth_random(void *buf, size_t len);

#endif
