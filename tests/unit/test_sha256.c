/* SHA-256 against the FIPS 180-2 / NIST example vectors, streaming in odd
 * chunk sizes, and sha256_file on a temporary file. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "util/sha256.h"

static void check_vector(const char *msg, size_t n, const char *want)
{
    char hex[65];
    sha256_buf_hex(msg, n, hex);
    CHECK_MSG(!strcmp(hex, want), "len %zu: got %s want %s", n, hex, want);
}

/* Feeding the same bytes in uneven pieces must not change the digest:
 * exercises the partial-block paths of sha256_update. */
static void check_chunked(const char *msg, size_t n, const char *want)
{
    static const size_t steps[] = {1, 3, 63, 64, 65, 127};
    for (size_t k = 0; k < DEFT_ARRAY_LEN(steps); k++) {
        sha256_t s;
        uint8_t d[32];
        char hex[65];
        sha256_init(&s);
        for (size_t i = 0; i < n; i += steps[k])
            sha256_update(&s, msg + i, n - i < steps[k] ? n - i : steps[k]);
        sha256_final(&s, d);
        sha256_hex(d, hex);
        CHECK_MSG(!strcmp(hex, want), "step %zu: got %s", steps[k], hex);
    }
}

int main(void)
{
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                       "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    check_vector("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    check_vector("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_vector(m448, strlen(m448),
                 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    check_vector(m896, strlen(m896),
                 "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    check_chunked(m896, strlen(m896),
                  "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");

    const char *million = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    size_t n = 1000000;
    char *a = malloc(n);
    memset(a, 'a', n);
    check_vector(a, n, million);
    check_chunked(a, n, million);

    /* sha256_file streams in 64 KiB reads: the million 'a' spans many of them. */
    char path[] = "/tmp/deft_test_sha256_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, a, n) == (ssize_t)n);
    close(fd);
    char hex[65];
    deft_err_t err = {0};
    CHECK(sha256_file(path, hex, &err) == DEFT_OK);
    CHECK_MSG(!strcmp(hex, million), "file digest %s", hex);
    unlink(path);
    free(a);

    CHECK(sha256_file("/nonexistent/deft/file", hex, &err) == DEFT_ERR_IO);
    CHECK_MSG(strstr(err.msg, "/nonexistent/deft/file") != NULL, "%s", err.msg);
    TEST_DONE();
}
