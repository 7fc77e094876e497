/* Reads plain or gzip-compressed files a line at a time through zlib's gzread,
 * which passes plain files through unchanged. */
#include "data/line_reader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LINE_CHUNK_BYTES (1 << 16)

int line_reader_open(line_reader_t *lr, const char *path, deft_err_t *err)
{
    memset(lr, 0, sizeof *lr);
    lr->path = path;
    lr->gz = gzopen(path, "rb");
    if (!lr->gz) {
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot open: %s", path,
                         errno ? strerror(errno) : "out of memory");
    }
    gzbuffer(lr->gz, 1 << 17);
    lr->chunk = xmalloc(LINE_CHUNK_BYTES);
    return DEFT_OK;
}

void line_reader_close(line_reader_t *lr)
{
    if (lr->gz)
        gzclose(lr->gz);
    free(lr->chunk);
    sb_free(&lr->line);
    memset(lr, 0, sizeof *lr);
}

/* Refills the chunk. Sets *end when the stream is over, and *broken when it
 * was over too early (a gzip member cut short or corrupt). */
static int refill(line_reader_t *lr, bool *end, bool *broken, deft_err_t *err)
{
    *end = *broken = false;
    int n = gzread(lr->gz, lr->chunk, LINE_CHUNK_BYTES);
    if (n > 0) {
        lr->chunk_len = (size_t)n;
        lr->chunk_pos = 0;
        return DEFT_OK;
    }
    int errnum = Z_OK;
    gzerror(lr->gz, &errnum);
    *end = true;
    switch (errnum) {
    case Z_OK:
        return DEFT_OK;
    case Z_ERRNO:
        return deft_fail(err, DEFT_ERR_IO, "%s: line %lld: read error: %s", lr->path,
                         (long long)lr->lineno, strerror(errno));
    case Z_MEM_ERROR:
        return deft_fail(err, DEFT_ERR_NOMEM, "%s: out of memory decompressing", lr->path);
    default:
        /* Z_BUF_ERROR is zlib's "unexpected end of file"; Z_DATA_ERROR a
         * corrupt stream. Both mean the rest of the file is lost. */
        *broken = true;
        return DEFT_OK;
    }
}

int line_reader_next(line_reader_t *lr, bool keep, line_status_t *status, deft_err_t *err)
{
    *status = LINE_EOF;
    if (lr->done)
        return DEFT_OK;
    lr->lineno++;
    lr->line.len = 0;
    if (lr->line.data)
        lr->line.data[0] = '\0';
    lr->line_bytes = 0;
    lr->terminated = false;
    for (;;) {
        if (lr->chunk_pos == lr->chunk_len) {
            bool end, broken;
            int rc = refill(lr, &end, &broken, err);
            if (rc)
                return rc;
            if (broken) {
                lr->done = true;
                *status = LINE_TRUNCATED;
                return DEFT_OK;
            }
            if (end) {
                lr->done = true;
                *status = lr->line_bytes ? LINE_OK : LINE_EOF;
                break;
            }
        }
        const char *p = lr->chunk + lr->chunk_pos;
        size_t avail = lr->chunk_len - lr->chunk_pos;
        const char *nl = memchr(p, '\n', avail);
        size_t n = nl ? (size_t)(nl - p) : avail;
        if (keep)
            sb_append(&lr->line, p, n);
        lr->line_bytes += n;
        lr->chunk_pos += nl ? n + 1 : n;
        if (nl) {
            lr->terminated = true;
            *status = LINE_OK;
            break;
        }
    }
    /* A UTF-8 byte order mark (some Windows editors start every file with one)
     * marks the encoding; it is not part of the first record. */
    static const char bom[3] = {'\xef', '\xbb', '\xbf'};
    if (keep && lr->lineno == 1 && lr->line.len >= 3 && !memcmp(lr->line.data, bom, 3)) {
        memmove(lr->line.data, lr->line.data + 3, lr->line.len - 2);
        lr->line.len -= 3;
    }
    /* "\r\n" files (written on Windows) read the same as "\n" files. */
    if (keep && lr->line.len && lr->line.data[lr->line.len - 1] == '\r')
        lr->line.data[--lr->line.len] = '\0';
    return DEFT_OK;
}
