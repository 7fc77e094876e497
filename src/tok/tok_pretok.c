/* The pre-tokenizer: the regular expression that splits text into the
 * pieces BPE merges within (PCRE2 with UTF, UCP and JIT), and the Llama 3
 * pattern for tiktoken-format models, which do not carry their own. */
#include <string.h>

#include "tok/tok_internal.h"

/* Llama 3 split rule: `pat_str` of Meta's llama3 repository
 * (llama/tokenizer.py), identical to the Split pattern in the Hugging Face
 * tokenizer.json of Meta-Llama-3. Contractions, letter runs with one leading
 * non-letter, digit groups of at most 3, punctuation runs, newlines, and
 * whitespace where `\s+(?!\S)` leaves the last space to the next word
 * ("a  b" -> "a", " ", " b"). */
const char tok_llama3_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Rust's regex (tiktoken) and Oniguruma (Hugging Face tokenizers) take \s
 * to be the Unicode White_Space property; PCRE2 with UCP leaves out U+0085
 * (NEXT LINE), so a text holding it would split differently. Rewrite \s and
 * \S to add it back: outside a class \s -> [\s\x{85}] and \S -> [^\s\x{85}],
 * inside a class \s -> \s\x{85}. (\S inside a class is kept as it is.) */
static void rewrite_space_classes(const char *p, strbuf_t *out)
{
    bool in_class = false;
    for (size_t i = 0; p[i]; i++) {
        char c = p[i];
        if (c == '\\' && p[i + 1]) {
            char x = p[++i];
            if (x == 's')
                sb_puts(out, in_class ? "\\s\\x{85}" : "[\\s\\x{85}]");
            else if (x == 'S' && !in_class)
                sb_puts(out, "[^\\s\\x{85}]");
            else {
                char esc[2] = {c, x};
                sb_append(out, esc, 2);
            }
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            sb_append(out, &c, 1);
            // a ']' right after '[' or '[^' is a literal member
            if (p[i + 1] == '^')
                sb_append(out, &p[++i], 1);
            if (p[i + 1] == ']')
                sb_append(out, &p[++i], 1);
            continue;
        }
        if (in_class && c == '[' && p[i + 1] == ':') {  // [:alpha:] inside a class
            const char *end = strstr(p + i + 2, ":]");
            if (end) {
                sb_append(out, p + i, (size_t)(end + 2 - (p + i)));
                i = (size_t)(end + 1 - p);
                continue;
            }
        }
        if (in_class && c == ']')
            in_class = false;
        sb_append(out, &c, 1);
    }
}

int tok_regex_compile(tokenizer_t *tok, const char *pattern, const char *origin,
                      deft_err_t *err)
{
    strbuf_t pat = {0};
    rewrite_space_classes(pattern, &pat);
    int code;
    PCRE2_SIZE at;
    tok->re = pcre2_compile((PCRE2_SPTR)pat.data, pat.len, PCRE2_UTF | PCRE2_UCP, &code, &at,
                            NULL);
    sb_free(&pat);
    if (!tok->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: pre-tokenizer pattern '%s': %s", origin,
                         pattern, (const char *)msg);
    }
    // JIT makes the split several times faster; without it pcre2_match interprets.
    tok->re_jit = pcre2_jit_compile(tok->re, PCRE2_JIT_COMPLETE) == 0;
    return DEFT_OK;
}
