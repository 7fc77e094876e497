/* Reads plain or gzip-compressed files a line at a time. gzip streams are
 * inflated here rather than through gzread, which stops without a word at
 * bytes after the last member that are not gzip (plain lines appended with
 * `cat >>`): those must be reported, not dropped. */
#include "data/line_reader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LINE_CHUNK_BYTES (1 << 16)
#define LINE_IN_BYTES (1 << 17)

static const unsigned char gzip_magic[2] = {0x1f, 0x8b};

/* Reads more compressed input behind what inflate has not used yet. */
static int in_fill(line_reader_t *lr, deft_err_t *err)
{
    if (lr->in_eof)
        return DEFT_OK;
    if (lr->zs.avail_in)
        memmove(lr->in, lr->zs.next_in, lr->zs.avail_in);
    size_t n = fread(lr->in + lr->zs.avail_in, 1, LINE_IN_BYTES - lr->zs.avail_in, lr->f);
    if (n == 0 && ferror(lr->f) && lr->lineno == 0)
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot read: %s", lr->path, strerror(errno));
    if (n == 0 && ferror(lr->f))
        return deft_fail(err, DEFT_ERR_IO, "%s: line %lld: read error: %s", lr->path,
                         (long long)lr->lineno, strerror(errno));
    lr->in_eof = n == 0;
    lr->zs.next_in = lr->in;
    lr->zs.avail_in += (uInt)n;
    return DEFT_OK;
}

int line_reader_open(line_reader_t *lr, const char *path, deft_err_t *err)
{
    memset(lr, 0, sizeof *lr);
    lr->path = path;
    lr->f = fopen(path, "rb");
    if (!lr->f)
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    lr->in = xmalloc(LINE_IN_BYTES);
    lr->chunk = xmalloc(LINE_CHUNK_BYTES);
    int rc = in_fill(lr, err);
    if (rc) {
        line_reader_close(lr);
        return rc;
    }
    // Any file that starts with the magic bytes is gzip, whatever its name.
    lr->gzip = lr->zs.avail_in >= 2 && !memcmp(lr->in, gzip_magic, 2);
    if (lr->gzip && inflateInit2(&lr->zs, 16 + MAX_WBITS) != Z_OK) {
        lr->gzip = false;
        line_reader_close(lr);
        return deft_fail(err, DEFT_ERR_NOMEM, "%s: out of memory for decompression", path);
    }
    return DEFT_OK;
}

void line_reader_close(line_reader_t *lr)
{
    if (lr->gzip)
        inflateEnd(&lr->zs);
    if (lr->f)
        fclose(lr->f);
    free(lr->in);
    free(lr->chunk);
    sb_free(&lr->line);
    memset(lr, 0, sizeof *lr);
}

/* After a member's end: another member follows (true), or the file ends
 * (false, *broken false), or bytes that are not gzip follow (*broken). Zero
 * bytes are padding (tape blocks), as gzip itself takes them. */
static int next_member(line_reader_t *lr, bool *more, bool *broken, deft_err_t *err)
{
    *more = *broken = false;
    int rc = lr->zs.avail_in < 2 ? in_fill(lr, err) : DEFT_OK;
    if (rc)
        return rc;
    if (lr->zs.avail_in >= 2 && !memcmp(lr->zs.next_in, gzip_magic, 2)) {
        *more = inflateReset(&lr->zs) == Z_OK;
        *broken = !*more;
        return DEFT_OK;
    }
    while (lr->zs.avail_in) {
        for (uInt i = 0; i < lr->zs.avail_in; i++) {
            if (lr->zs.next_in[i]) {
                lr->trailing = *broken = true;
                return DEFT_OK;
            }
        }
        lr->zs.avail_in = 0;
        if ((rc = in_fill(lr, err)))
            return rc;
    }
    return DEFT_OK;
}

/* Refills the chunk. Sets *end when the stream is over, and *broken when it
 * was over too early (a gzip member cut short or corrupt, or followed by
 * bytes that are not gzip). */
static int refill(line_reader_t *lr, bool *end, bool *broken, deft_err_t *err)
{
    *end = *broken = false;
    lr->chunk_len = lr->chunk_pos = 0;
    if (!lr->gzip) {
        size_t n = lr->zs.avail_in;  /* bytes read to look for the magic */
        if (n) {
            memcpy(lr->chunk, lr->zs.next_in, n < LINE_CHUNK_BYTES ? n : LINE_CHUNK_BYTES);
            n = n < LINE_CHUNK_BYTES ? n : LINE_CHUNK_BYTES;
            lr->zs.next_in += n;
            lr->zs.avail_in -= (uInt)n;
        } else {
            n = fread(lr->chunk, 1, LINE_CHUNK_BYTES, lr->f);
            if (n == 0 && ferror(lr->f))
                return deft_fail(err, DEFT_ERR_IO, "%s: line %lld: read error: %s", lr->path,
                                 (long long)lr->lineno, strerror(errno));
        }
        lr->chunk_len = n;
        *end = n == 0;
        return DEFT_OK;
    }
    while (lr->chunk_len == 0) {
        if (lr->member_end) {
            bool more;
            int rc = next_member(lr, &more, broken, err);
            if (rc || *broken)
                return rc;
            if (!more) {
                *end = true;
                return DEFT_OK;
            }
            lr->member_end = false;
        }
        if (lr->zs.avail_in == 0) {
            int rc = in_fill(lr, err);
            if (rc)
                return rc;
        }
        bool starved = lr->zs.avail_in == 0;
        lr->zs.next_out = (Bytef *)lr->chunk;
        lr->zs.avail_out = LINE_CHUNK_BYTES;
        int z = inflate(&lr->zs, Z_NO_FLUSH);
        lr->chunk_len = LINE_CHUNK_BYTES - lr->zs.avail_out;
        if (z == Z_STREAM_END) {
            lr->member_end = true;
        } else if (z == Z_MEM_ERROR) {
            return deft_fail(err, DEFT_ERR_NOMEM, "%s: out of memory decompressing",
                             lr->path);
        } else if (z != Z_OK && !(z == Z_BUF_ERROR && !starved)) {
            /* Z_DATA_ERROR: a corrupt stream; Z_BUF_ERROR with no input left:
             * the file ends inside a member. Both lose the rest of the file;
             * what came out before is still delivered first. */
            if (lr->chunk_len == 0)
                *broken = true;
            return DEFT_OK;
        } else if (starved && lr->chunk_len == 0) {
            *broken = true;
            return DEFT_OK;
        }
    }
    return DEFT_OK;
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
