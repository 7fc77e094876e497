/* Text shared by the config parser, its help and its reference: how a key's
 * type, range and default read to a person. Private to src/config. */
#ifndef DEFT_CONFIG_TEXT_H
#define DEFT_CONFIG_TEXT_H

#include <stdio.h>

#include "config/config.h"

/* True when a CFG_INT/CFG_FLOAT key has a range to check. */
bool cfg_key_has_range(const cfg_key_t *k);

/* What a value of this key must be: "an integer >= 0", "a number in [0, 0.5]",
 * "one of sft|dpo|pro", "true or false". with_range false leaves the range out. */
void cfg_describe_expected(const cfg_key_t *k, bool with_range, strbuf_t *out);

/* The shortest text that reads back as exactly x ("0.1", "5e-07"). */
void cfg_format_double(double x, char *buf, size_t n);

/* `deft SECTION --help`: every shared key, then every key of the section. */
void cfg_write_help(const cfg_section_t *sec, FILE *f);

#endif
