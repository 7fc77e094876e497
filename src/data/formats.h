/* The three preference-data line formats (HH-RLHF dialogue pairs, PRO ranked
 * lists, prompt/chosen/rejected pairs): from one parsed JSON object to a
 * prompt and ranked responses, or the reason the line cannot be used. */
#ifndef DEFT_DATA_FORMATS_H
#define DEFT_DATA_FORMATS_H

#include <jansson.h>

#include "data/records.h"

typedef enum { FORMAT_AUTO, FORMAT_HH, FORMAT_PRO, FORMAT_PAIR } data_format_t;

/* NULL and "auto" give FORMAT_AUTO; returns false for an unknown name. */
bool format_from_name(const char *name, data_format_t *fmt);

/* Why a line was not used: the reason, the field at fault, and a detail
 * that quotes the offending value. */
typedef struct {
    skip_reason_t reason;
    char field[64];
    char detail[320];
} skip_info_t;

/* Fills rec's prompt, responses and rewards (ranked best first) and, for PRO
 * lines that name one in meta.path, *subset (else NULL; the caller frees it).
 * *turns_differ says a PRO line's turn lists were not all equal (the first
 * was used). Returns false with *why filled, and nothing allocated, when the
 * line is unusable. */
bool format_parse(const json_t *obj, data_format_t fmt, bool keep_file_order,
                  pref_record_t *rec, char **subset, bool *turns_differ, skip_info_t *why);

/* Sets *why; returns false so callers can write `return skip(...)`. */
bool skip_set(skip_info_t *why, skip_reason_t reason, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes s[0..len) into dst[n] as a short quoted excerpt with escapes, for messages. */
void format_excerpt(char *dst, size_t n, const char *s, size_t len);

#endif
