/* Line-by-line reading of plain or gzip-compressed text files: lines of any
 * length, "\r\n" taken as a newline, a UTF-8 byte order mark at the start
 * skipped, and gzip streams that end early or are corrupt reported as
 * truncated rather than as a quiet end of file. */
#ifndef DEFT_LINE_READER_H
#define DEFT_LINE_READER_H

#include <stdio.h>
#include <zlib.h>

#include "util/common.h"

typedef enum {
    LINE_OK,         /* a line is ready (possibly the last, unterminated one) */
    LINE_EOF,        /* no more lines */
    LINE_TRUNCATED,  /* the gzip stream broke off (or was followed by bytes that are
                        not gzip, see `trailing`): line holds what arrived of this line */
} line_status_t;

typedef struct {
    const char *path;
    FILE *f;
    bool gzip;          /* the file starts with the gzip magic bytes */
    z_stream zs;        /* inflate state of the current gzip member */
    bool member_end;    /* a member ended: what follows is another member, or garbage */
    bool trailing;      /* the stream broke on bytes after the last member (not gzip) */
    unsigned char *in;  /* [LINE_IN_BYTES] compressed bytes read from f, not yet inflated */
    bool in_eof;        /* f has no more bytes */
    char *chunk;        /* [LINE_CHUNK_BYTES] decompressed bytes not yet split into lines */
    size_t chunk_len, chunk_pos;
    strbuf_t line;      /* the current line without its newline, when it was kept */
    size_t line_bytes;  /* bytes of the current line, kept or not */
    int64_t lineno;     /* 1-based number of the current line */
    bool terminated;    /* the current line ended with a newline */
    bool done;
} line_reader_t;

int line_reader_open(line_reader_t *lr, const char *path, deft_err_t *err);

/* Moves to the next line. With keep == false its bytes are passed over
 * without being stored (lines another rank parses). */
int line_reader_next(line_reader_t *lr, bool keep, line_status_t *status, deft_err_t *err);

void line_reader_close(line_reader_t *lr);

#endif
