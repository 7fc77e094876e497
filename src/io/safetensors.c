/* safetensors reading (mmap, single file or sharded through
 * model.safetensors.index.json) and atomic writing with float32 -> bf16/f16
 * conversion. Every offset in a header is checked against the file before
 * any tensor is handed out, so a hostile or truncated file is an error. */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation refuses headers over 100 MB; so do we, which
 * also bounds what a corrupt length field can make us allocate. */
#define ST_MAX_HEADER (100u * 1000u * 1000u)

typedef struct {
    char *path;
    void *base;      /* whole file, mapped read-only */
    size_t len;
    json_t *meta;    /* the header's __metadata__ object, or NULL */
} st_map_t;

struct st_set {
    st_tensor_t *t;  /* sorted by name, for st_find */
    int n;
    st_map_t *maps;
    int nmaps;
};

// ----------------------------------------------------------------------------
// dtypes

static const struct {
    const char *name;
    st_dtype_t dtype;
    size_t size;
} dtype_table[] = {
    {"F32", ST_F32, 4}, {"F16", ST_F16, 2}, {"BF16", ST_BF16, 2},
    {"F64", ST_F64, 8}, {"I32", ST_I32, 4}, {"I64", ST_I64, 8},
};

static size_t dtype_size(st_dtype_t d)
{
    for (size_t i = 0; i < DEFT_ARRAY_LEN(dtype_table); i++)
        if (dtype_table[i].dtype == d)
            return dtype_table[i].size;
    return 0;
}

static const char *dtype_name(st_dtype_t d)
{
    for (size_t i = 0; i < DEFT_ARRAY_LEN(dtype_table); i++)
        if (dtype_table[i].dtype == d)
            return dtype_table[i].name;
    return "?";
}

static int dtype_parse(const char *s, st_dtype_t *d)
{
    for (size_t i = 0; i < DEFT_ARRAY_LEN(dtype_table); i++)
        if (!strcmp(dtype_table[i].name, s)) {
            *d = dtype_table[i].dtype;
            return 0;
        }
    return -1;
}

static float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest, ties to even, on the 16 dropped mantissa bits; NaN stays
 * a (quiet) NaN instead of rounding into infinity. */
static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp == 0) {
        /* subnormal: man * 2^-24, exact in float32 */
        float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    } else {
        u = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE half with round to nearest even, overflow to infinity, gradual
 * underflow to subnormals and zero. */
static uint16_t f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return sign | 0x7e00u;
    if (a >= 0x477ff000u)          /* rounds to >= 65520: infinity */
        return sign | 0x7c00u;
    if (a < 0x38800000u) {         /* below the smallest normal half, 2^-14 */
        if (a < 0x33000000u)       /* at or below half of the smallest subnormal */
            return sign;
        uint32_t exp = a >> 23, man = (a & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)exp; /* value = man * 2^(exp-150); half unit 2^-24 */
        uint32_t q = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return sign | (uint16_t)q;
    }
    uint32_t r = a - 0x38000000u;  /* rebias exponent 127 -> 15 */
    r += 0xfffu + ((r >> 13) & 1u);
    return sign | (uint16_t)(r >> 13);
}

int64_t st_numel(const st_tensor_t *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

void st_to_f32(const st_tensor_t *t, float *dst)
{
    int64_t n = st_numel(t);
    const unsigned char *p = t->data;
    /* memcpy per element: a foreign file need not align its tensors */
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case ST_F32: memcpy(&dst[i], p + 4 * i, 4); break;
        case ST_F16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = f16_to_f32(h);
            break;
        }
        case ST_BF16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = bf16_to_f32(h);
            break;
        }
        case ST_F64: {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
            break;
        }
        case ST_I32: {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            dst[i] = (float)v;
            break;
        }
        case ST_I64: {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            dst[i] = (float)v;
            break;
        }
        }
    }
}

// ----------------------------------------------------------------------------
// header parsing

typedef struct {
    uint64_t begin, end;
    int idx;
} span_t;

static int span_cmp(const void *a, const void *b)
{
    const span_t *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int json_to_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

void st_free_tensors(st_tensor_t *t, int n)
{
    if (!t)
        return;
    for (int i = 0; i < n; i++)
        free(t[i].name);
    free(t);
}

/* One tensor entry {dtype, shape, data_offsets}: fills t and its byte span. */
static int parse_entry(const char *file, const char *name, json_t *e, size_t data_len,
                       st_tensor_t *t, span_t *sp, deft_err_t *err)
{
    if (!json_is_object(e))
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: tensor '%s': entry is not an object",
                         file, name);
    json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape");
    json_t *jo = json_object_get(e, "data_offsets");
    if (!json_is_string(jd))
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: tensor '%s': missing or non-string "
                         "field 'dtype'", file, name);
    if (dtype_parse(json_string_value(jd), &t->dtype))
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: tensor '%s': unsupported dtype '%s' "
                         "(expected F32, F16, BF16, F64, I32 or I64)", file, name,
                         json_string_value(jd));
    if (!json_is_array(js) || json_array_size(js) > DEFT_ARRAY_LEN(t->shape))
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: tensor '%s': field 'shape' must be a "
                         "list of at most %zu sizes", file, name, DEFT_ARRAY_LEN(t->shape));
    t->ndim = (int)json_array_size(js);
    uint64_t numel = 1;
    bool overflow = false;
    for (int i = 0; i < t->ndim; i++) {
        uint64_t d;
        if (json_to_u64(json_array_get(js, i), &d))
            return deft_fail(err, DEFT_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a "
                             "non-negative integer", file, name, i);
        t->shape[i] = (int64_t)d;
        if (d && numel > UINT64_MAX / 8 / d)
            overflow = true;
        numel *= d;
    }
    uint64_t begin, end;
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        json_to_u64(json_array_get(jo, 0), &begin) || json_to_u64(json_array_get(jo, 1), &end))
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: tensor '%s': field 'data_offsets' must "
                         "be [begin, end] with non-negative integers", file, name);
    if (begin > end || end > data_len)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] "
                         "outside the data section of %zu bytes%s", file, name,
                         (unsigned long long)begin, (unsigned long long)end, data_len,
                         begin > end ? " (begin > end)" : " (file truncated?)");
    uint64_t want = numel * dtype_size(t->dtype);
    if (overflow || end - begin != want)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] "
                         "hold %llu bytes but shape and dtype %s need %llu", file, name,
                         (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)(end - begin), dtype_name(t->dtype),
                         (unsigned long long)want);
    t->nbytes = (size_t)want;
    sp->begin = begin;
    sp->end = end;
    return DEFT_OK;
}

/* base: start of the data section, or NULL (then every tensor's data is NULL).
 * meta (optional) receives a reference to __metadata__ when there is one. */
static int parse_header(const char *json, size_t len, size_t data_len, const char *file,
                        const char *base, st_tensor_t **tensors, int *n, json_t **meta,
                        deft_err_t *err)
{
    *tensors = NULL;
    *n = 0;
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: malformed JSON header at byte %d "
                         "(file offset %d): %s", file, je.position, je.position + 8, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: header is not a JSON object", file);
    }
    size_t cap = json_object_size(root);
    st_tensor_t *t = xcalloc(cap ? cap : 1, sizeof *t);
    span_t *sp = xcalloc(cap ? cap : 1, sizeof *sp);
    int k = 0, rc = DEFT_OK;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            /* free-form string map; only its shape is checked */
            if (!json_is_object(val)) {
                rc = deft_fail(err, DEFT_ERR_FORMAT, "%s: __metadata__ is not an object",
                               file);
                break;
            }
            if (meta)
                *meta = json_incref(val);
            continue;
        }
        rc = parse_entry(file, key, val, data_len, &t[k], &sp[k], err);
        if (rc)
            break;
        t[k].name = xstrdup(key);
        t[k].file = file;
        t[k].data = base ? base + sp[k].begin : NULL;
        sp[k].idx = k;
        k++;
    }
    if (!rc) {
        qsort(sp, k, sizeof *sp, span_cmp);
        for (int i = 1; i < k; i++)
            if (sp[i].begin < sp[i - 1].end) {
                rc = deft_fail(err, DEFT_ERR_FORMAT, "%s: tensors '%s' [%llu, %llu] and "
                               "'%s' [%llu, %llu] overlap", file, t[sp[i - 1].idx].name,
                               (unsigned long long)sp[i - 1].begin,
                               (unsigned long long)sp[i - 1].end, t[sp[i].idx].name,
                               (unsigned long long)sp[i].begin,
                               (unsigned long long)sp[i].end);
                break;
            }
    }
    free(sp);
    json_decref(root);
    if (rc) {
        if (meta && *meta) {
            json_decref(*meta);
            *meta = NULL;
        }
        st_free_tensors(t, k);
        return rc;
    }
    *tensors = t;
    *n = k;
    return DEFT_OK;
}

int st_parse_header(const char *json, size_t len, size_t data_len, const char *file,
                    st_tensor_t **tensors, int *n, deft_err_t *err)
{
    return parse_header(json, len, data_len, file, NULL, tensors, n, NULL, err);
}

// ----------------------------------------------------------------------------
// opening files and sharded sets

static uint64_t read_u64le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int map_file(st_map_t *m, const char *path, deft_err_t *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat stt;
    if (fstat(fd, &stt)) {
        int e = errno;
        close(fd);
        return deft_fail(err, DEFT_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    m->path = xstrdup(path);
    m->len = (size_t)stt.st_size;
    m->base = NULL;
    if (m->len > 0) {
        m->base = mmap(NULL, m->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m->base == MAP_FAILED) {
            int e = errno;
            close(fd);
            m->base = NULL;
            return deft_fail(err, DEFT_ERR_IO, "%s: cannot map %zu bytes: %s", path,
                             m->len, strerror(e));
        }
    }
    close(fd);
    return DEFT_OK;
}

/* Adds one mapped file's tensors to the set. */
static int set_add_file(st_set_t *s, const char *path, deft_err_t *err)
{
    s->maps = xrealloc(s->maps, (size_t)(s->nmaps + 1) * sizeof *s->maps);
    st_map_t *m = &s->maps[s->nmaps];
    memset(m, 0, sizeof *m);
    int rc = map_file(m, path, err);
    if (rc) {
        free(m->path);
        return rc;
    }
    s->nmaps++;
    if (m->len < 8)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: truncated: %zu bytes, shorter than the "
                         "8-byte header length", path, m->len);
    uint64_t hlen = read_u64le(m->base);
    if (hlen > ST_MAX_HEADER)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: header length %llu at byte 0 exceeds "
                         "the %u-byte limit (not a safetensors file?)", path,
                         (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > m->len - 8)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: truncated: header length %llu runs past "
                         "the end of the file (%zu bytes)", path,
                         (unsigned long long)hlen, m->len);
    const char *hdr = (const char *)m->base + 8;
    st_tensor_t *t;
    int n;
    rc = parse_header(hdr, (size_t)hlen, m->len - 8 - (size_t)hlen, m->path,
                      hdr + hlen, &t, &n, &m->meta, err);
    if (rc)
        return rc;
    s->t = xrealloc(s->t, (size_t)(s->n + n + 1) * sizeof *s->t);
    memcpy(s->t + s->n, t, (size_t)n * sizeof *t);
    s->n += n;
    free(t);  /* the names moved into s->t */
    return DEFT_OK;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(((const st_tensor_t *)a)->name, ((const st_tensor_t *)b)->name);
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static bool is_file(const char *p)
{
    struct stat stt;
    return !stat(p, &stt) && S_ISREG(stt.st_mode);
}

/* Opens every shard named in an index's weight_map, then checks that each
 * name is found in the shard the index says. */
static int set_add_index(st_set_t *s, const char *index_path, deft_err_t *err)
{
    json_error_t je;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return deft_fail(err, DEFT_ERR_FORMAT, "%s:%d:%d: malformed JSON: %s", index_path,
                         je.line, je.column, je.text);
    json_t *wm = json_object_get(root, "weight_map");
    int rc = DEFT_OK;
    if (!json_is_object(wm)) {
        json_decref(root);
        return deft_fail(err, DEFT_ERR_FORMAT, "%s: missing object field 'weight_map'",
                         index_path);
    }
    char *dircopy = xstrdup(index_path);
    const char *dir = dirname(dircopy);
    const char *key;
    json_t *val;
    /* shards in first-seen order, each opened once */
    json_t *seen = json_object();
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val) || strchr(json_string_value(val), '/')) {
            rc = deft_fail(err, DEFT_ERR_FORMAT, "%s: weight_map['%s'] must be a file name "
                           "in the same folder", index_path, key);
            break;
        }
        const char *shard = json_string_value(val);
        if (json_object_get(seen, shard))
            continue;
        json_object_set_new(seen, shard, json_true());
        strbuf_t p = {0};
        sb_printf(&p, "%s/%s", dir, shard);
        rc = set_add_file(s, p.data, err);
        sb_free(&p);
        if (rc)
            break;
    }
    if (!rc) {
        json_object_foreach(wm, key, val) {
            strbuf_t p = {0};
            sb_printf(&p, "%s/%s", dir, json_string_value(val));
            bool found = false;
            for (int i = 0; i < s->n && !found; i++)
                found = !strcmp(s->t[i].name, key) && !strcmp(s->t[i].file, p.data);
            sb_free(&p);
            if (!found) {
                rc = deft_fail(err, DEFT_ERR_FORMAT, "%s: weight_map names tensor '%s' in "
                               "'%s', which does not hold it", index_path, key,
                               json_string_value(val));
                break;
            }
        }
    }
    json_decref(seen);
    json_decref(root);
    free(dircopy);
    return rc;
}

int st_open(st_set_t **out, const char *path, deft_err_t *err)
{
    *out = NULL;
    st_set_t *s = xcalloc(1, sizeof *s);
    int rc;
    struct stat stt;
    if (stat(path, &stt)) {
        rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    } else if (S_ISDIR(stt.st_mode)) {
        strbuf_t single = {0}, index = {0};
        sb_printf(&single, "%s/model.safetensors", path);
        sb_printf(&index, "%s/model.safetensors.index.json", path);
        if (is_file(single.data))
            rc = set_add_file(s, single.data, err);
        else if (is_file(index.data))
            rc = set_add_index(s, index.data, err);
        else
            rc = deft_fail(err, DEFT_ERR_IO, "%s: holds neither model.safetensors nor "
                           "model.safetensors.index.json", path);
        sb_free(&single);
        sb_free(&index);
    } else if (has_suffix(path, ".json")) {
        rc = set_add_index(s, path, err);
    } else {
        rc = set_add_file(s, path, err);
    }
    if (!rc && s->n > 1) {
        qsort(s->t, s->n, sizeof *s->t, name_cmp);
        for (int i = 1; i < s->n; i++)
            if (!strcmp(s->t[i].name, s->t[i - 1].name)) {
                rc = deft_fail(err, DEFT_ERR_FORMAT, "tensor '%s' is stored twice: in %s "
                               "and in %s", s->t[i].name, s->t[i - 1].file, s->t[i].file);
                break;
            }
    }
    if (rc) {
        st_close(s);
        return rc;
    }
    *out = s;
    return DEFT_OK;
}

void st_close(st_set_t *s)
{
    if (!s)
        return;
    st_free_tensors(s->t, s->n);
    for (int i = 0; i < s->nmaps; i++) {
        if (s->maps[i].base)
            munmap(s->maps[i].base, s->maps[i].len);
        json_decref(s->maps[i].meta);
        free(s->maps[i].path);
    }
    free(s->maps);
    free(s);
}

int st_count(const st_set_t *s) { return s->n; }

const st_tensor_t *st_at(const st_set_t *s, int i)
{
    return i >= 0 && i < s->n ? &s->t[i] : NULL;
}

const st_tensor_t *st_find(const st_set_t *s, const char *name)
{
    st_tensor_t key = {.name = (char *)name};
    return bsearch(&key, s->t, s->n, sizeof *s->t, name_cmp);
}

const char *st_metadata(const st_set_t *s, const char *key)
{
    for (int i = 0; i < s->nmaps; i++) {
        json_t *v = s->maps[i].meta ? json_object_get(s->maps[i].meta, key) : NULL;
        if (json_is_string(v))
            return json_string_value(v);
    }
    return NULL;
}

// ----------------------------------------------------------------------------
// writing

static void encode(const float *src, int64_t n, st_dtype_t dtype, unsigned char *dst)
{
    for (int64_t i = 0; i < n; i++) {
        switch (dtype) {
        case ST_F32: memcpy(dst + 4 * i, &src[i], 4); break;
        case ST_BF16: {
            uint16_t h = f32_to_bf16(src[i]);
            memcpy(dst + 2 * i, &h, 2);
            break;
        }
        case ST_F16: {
            uint16_t h = f32_to_f16(src[i]);
            memcpy(dst + 2 * i, &h, 2);
            break;
        }
        case ST_F64: {
            double d = src[i];
            memcpy(dst + 8 * i, &d, 8);
            break;
        }
        default: break;
        }
    }
}

/* The JSON header, padded with spaces to a multiple of 8 bytes so that the
 * data section (and every float32 tensor in it) starts aligned. */
static int build_header(const st_write_tensor_t *t, int n, st_dtype_t dtype,
                        const char *metadata_json, const char *path, strbuf_t *out,
                        deft_err_t *err)
{
    json_t *root = json_object();
    if (metadata_json) {
        json_error_t je;
        json_t *meta = json_loads(metadata_json, 0, &je);
        const char *k;
        json_t *v;
        bool ok = json_is_object(meta);
        if (ok)
            json_object_foreach(meta, k, v) ok = ok && json_is_string(v);
        if (!ok) {
            json_decref(meta);
            json_decref(root);
            return deft_fail(err, DEFT_ERR_USAGE, "%s: metadata must be a JSON object of "
                             "strings, got: %.200s", path, metadata_json);
        }
        json_object_set_new(root, "__metadata__", meta);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (json_object_get(root, t[i].name) || !strcmp(t[i].name, "__metadata__")) {
            json_decref(root);
            return deft_fail(err, DEFT_ERR_USAGE, "%s: tensor name '%s' is used twice or "
                             "reserved", path, t[i].name);
        }
        json_t *shape = json_array();
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            json_array_append_new(shape, json_integer(t[i].shape[d]));
            numel *= (uint64_t)t[i].shape[d];
        }
        uint64_t nb = numel * dtype_size(dtype);
        json_object_set_new(root, t[i].name,
                            json_pack("{s:s, s:o, s:[I, I]}", "dtype", dtype_name(dtype),
                                      "shape", shape, "data_offsets", (json_int_t)off,
                                      (json_int_t)(off + nb)));
        off += nb;
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    size_t len = strlen(s), padded = (len + 7) & ~(size_t)7;
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++)
        lenbuf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    sb_append(out, (const char *)lenbuf, 8);
    sb_append(out, s, len);
    for (size_t i = len; i < padded; i++)
        sb_append(out, " ", 1);
    free(s);
    return DEFT_OK;
}

/* The rename itself is durable only once the folder's entry is on disk. */
static void sync_parent_dir(const char *path)
{
    char *copy = xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

int st_write(const char *path, const st_write_tensor_t *t, int n, st_dtype_t dtype,
             const char *metadata_json, deft_err_t *err)
{
    if (dtype != ST_F32 && dtype != ST_BF16 && dtype != ST_F16 && dtype != ST_F64)
        return deft_fail(err, DEFT_ERR_USAGE, "%s: cannot write dtype %s from float32", path,
                         dtype_name(dtype));
    strbuf_t hdr = {0};
    int rc = build_header(t, n, dtype, metadata_json, path, &hdr, err);
    if (rc)
        return rc;
    strbuf_t tmp = {0};
    sb_printf(&tmp, "%s.tmp", path);
    FILE *f = fopen(tmp.data, "wb");
    if (!f) {
        rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot create: %s", tmp.data, strerror(errno));
        goto done;
    }
    bool ok = fwrite(hdr.data, 1, hdr.len, f) == hdr.len;
    /* converted in chunks so that an 8B model never needs a second full copy */
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = xmalloc(CHUNK * 8);
    size_t es = dtype_size(dtype);
    for (int i = 0; i < n && ok; i++) {
        int64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++)
            numel *= t[i].shape[d];
        for (int64_t j = 0; j < numel && ok; j += CHUNK) {
            int64_t m = numel - j < CHUNK ? numel - j : CHUNK;
            encode(t[i].data + j, m, dtype, buf);
            ok = fwrite(buf, es, (size_t)m, f) == (size_t)m;
        }
    }
    free(buf);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        unlink(tmp.data);
        rc = deft_fail(err, DEFT_ERR_IO, "%s: write failed: %s", tmp.data, strerror(e));
        goto done;
    }
    if (rename(tmp.data, path)) {
        e = errno;
        unlink(tmp.data);
        rc = deft_fail(err, DEFT_ERR_IO, "%s: cannot rename to %s: %s", tmp.data, path,
                       strerror(e));
    } else {
        sync_parent_dir(path);
    }
done:
    sb_free(&tmp);
    sb_free(&hdr);
    return rc;
}
