/* SHA-256 (FIPS 180-4), used to record which data and tokenizer files a
 * stage's output was made from. */
#ifndef DEFT_SHA256_H
#define DEFT_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "util/common.h"

typedef struct {
    uint32_t h[8];        /* running hash state H0..H7 */
    uint8_t block[64];    /* bytes of the current, incomplete 512-bit block */
    size_t nblock;        /* bytes held in block */
    uint64_t nbytes;      /* message length so far, in bytes */
} sha256_t;

void sha256_init(sha256_t *s);
void sha256_update(sha256_t *s, const void *data, size_t n);
void sha256_final(sha256_t *s, uint8_t digest[32]);

/* Lowercase hex of 32 digest bytes, NUL-terminated. */
void sha256_hex(const uint8_t digest[32], char hex[65]);

/* Hash of a whole buffer, as lowercase hex. */
void sha256_buf_hex(const void *data, size_t n, char hex[65]);

/* Stream a file through SHA-256; DEFT_ERR_IO naming the path on failure. */
int sha256_file(const char *path, char hex[65], deft_err_t *err);

#endif
