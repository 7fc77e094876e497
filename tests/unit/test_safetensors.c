/* safetensors reader and writer against files made by the reference Python
 * package (tools/make_safetensors_fixtures.py), the bundled TinyStories
 * model, hand-made broken files, and a few thousand random mutations of
 * real headers that must never crash. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "test_util.h"

#define FIX "tests/fixtures/safetensors"

static char tmpdir[] = "/tmp/deft-st-XXXXXX";

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(*len + 1);
    if (fread(buf, 1, *len, f) != *len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static void write_all(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, n, f);
    fclose(f);
}

static float *to_f32(const st_tensor_t *t)
{
    float *v = malloc(sizeof(float) * (st_numel(t) + 1));
    st_to_f32(t, v);
    return v;
}

// ----------------------------------------------------------------------------

static void test_mixed(void)
{
    st_set_t *s;
    deft_err_t err = {0};
    CHECK(st_open(&s, FIX "/mixed.safetensors", &err) == DEFT_OK);
    if (!s) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    json_t *want = json_load_file(FIX "/mixed.json", 0, NULL);
    CHECK(want != NULL);
    CHECK(st_count(s) == (int)json_object_size(want));
    const char *name;
    json_t *e;
    json_object_foreach(want, name, e) {
        const st_tensor_t *t = st_find(s, name);
        CHECK_MSG(t != NULL, "%s", name);
        if (!t)
            continue;
        json_t *shape = json_object_get(e, "shape"), *vals = json_object_get(e, "values");
        CHECK(t->ndim == (int)json_array_size(shape));
        for (int d = 0; d < t->ndim; d++)
            CHECK(t->shape[d] == json_integer_value(json_array_get(shape, d)));
        CHECK(st_numel(t) == (int64_t)json_array_size(vals));
        float *v = to_f32(t);
        int bad = 0;
        for (size_t i = 0; i < json_array_size(vals); i++)
            bad += v[i] != (float)json_number_value(json_array_get(vals, i));
        CHECK_MSG(bad == 0, "%s: %d values differ", name, bad);
        free(v);
    }
    CHECK(st_find(s, "absent") == NULL);
    CHECK(st_find(s, "__metadata__") == NULL);
    CHECK(st_metadata(s, "note") && !strcmp(st_metadata(s, "note"), "fixture"));
    CHECK(st_metadata(s, "nope") == NULL);
    CHECK(st_find(s, "b.f16")->dtype == ST_F16 && st_find(s, "c.bf16")->dtype == ST_BF16);
    CHECK(st_find(s, "g.scalar")->ndim == 0 && st_numel(st_find(s, "g.scalar")) == 1);
    json_decref(want);
    st_close(s);
}

static void check_sharded(const char *path)
{
    st_set_t *s;
    deft_err_t err = {0};
    CHECK_MSG(st_open(&s, path, &err) == DEFT_OK, "%s", err.msg);
    if (!s)
        return;
    json_t *want = json_load_file(FIX "/sharded.json", 0, NULL);
    CHECK(st_count(s) == 3);
    const char *name;
    json_t *vals;
    json_object_foreach(want, name, vals) {
        const st_tensor_t *t = st_find(s, name);
        CHECK_MSG(t != NULL, "%s", name);
        if (!t)
            continue;
        float *v = to_f32(t);
        for (size_t i = 0; i < json_array_size(vals); i++)
            CHECK(v[i] == (float)json_number_value(json_array_get(vals, i)));
        free(v);
    }
    CHECK(strstr(st_find(s, "w3")->file, "00002-of-00002") != NULL);
    json_decref(want);
    st_close(s);
}

/* Our float32 -> bf16/f16 rounding must give torch's bits exactly. */
static void test_convert(void)
{
    st_set_t *s;
    deft_err_t err = {0};
    CHECK(st_open(&s, FIX "/convert.safetensors", &err) == DEFT_OK);
    if (!s)
        return;
    const st_tensor_t *src = st_find(s, "src");
    float *x = to_f32(src);
    st_write_tensor_t w = {"x", 1, {st_numel(src)}, x};
    const char *names[2] = {"bf16", "f16"};
    st_dtype_t dts[2] = {ST_BF16, ST_F16};
    for (int k = 0; k < 2; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s.safetensors", tmpdir, names[k]);
        CHECK_MSG(st_write(path, &w, 1, dts[k], NULL, &err) == DEFT_OK, "%s", err.msg);
        st_set_t *o;
        CHECK_MSG(st_open(&o, path, &err) == DEFT_OK, "%s", err.msg);
        if (!o)
            continue;
        const st_tensor_t *mine = st_find(o, "x"), *ref = st_find(s, names[k]);
        CHECK(mine->dtype == dts[k] && mine->nbytes == ref->nbytes);
        int bad = 0;
        for (int64_t i = 0; i < st_numel(ref); i++) {
            uint16_t a, b;
            memcpy(&a, (const char *)mine->data + 2 * i, 2);
            memcpy(&b, (const char *)ref->data + 2 * i, 2);
            if (a != b && bad++ < 5)
                fprintf(stderr, "%s[%lld]: %.9g -> %04x, torch %04x\n", names[k],
                        (long long)i, x[i], a, b);
        }
        CHECK_MSG(bad == 0, "%s: %d of %lld differ", names[k], bad, (long long)st_numel(ref));
        /* and the reverse conversion agrees with torch's widening */
        float *back = to_f32(ref);
        float *mine32 = to_f32(mine);
        CHECK(memcmp(back, mine32, sizeof(float) * st_numel(ref)) == 0);
        free(back);
        free(mine32);
        st_close(o);
    }
    free(x);
    st_close(s);
}

static void test_roundtrip(void)
{
    enum { N1 = 37, N2 = 6 };
    float a[N1], b[N2];
    for (int i = 0; i < N1; i++)
        a[i] = (float)((double)next_u64() / 1.8e19 - 0.5);
    for (int i = 0; i < N2; i++)
        b[i] = (float)i * 1.5f;
    st_write_tensor_t w[3] = {{"layer.a", 1, {N1}, a},
                              {"layer.b", 2, {2, 3}, b},
                              {"empty", 2, {0, 5}, NULL}};
    char path[512], tmp[600];
    snprintf(path, sizeof path, "%s/rt.safetensors", tmpdir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    deft_err_t err = {0};
    CHECK(st_write(path, w, 3, ST_F32, "{\"format\": \"pt\", \"k\": \"v\"}", &err) == 0);
    CHECK(access(tmp, F_OK) != 0);
    size_t len;
    char *raw = read_all(path, &len);
    uint64_t hlen = 0;
    memcpy(&hlen, raw, 8);  /* little-endian host */
    CHECK(hlen % 8 == 0);
    CHECK(len == 8 + hlen + sizeof a + sizeof b);
    free(raw);
    st_set_t *s;
    CHECK_MSG(st_open(&s, path, &err) == DEFT_OK, "%s", err.msg);
    if (s) {
        CHECK(st_count(s) == 3);
        CHECK(memcmp(st_find(s, "layer.a")->data, a, sizeof a) == 0);
        CHECK(memcmp(st_find(s, "layer.b")->data, b, sizeof b) == 0);
        CHECK(st_find(s, "layer.b")->shape[1] == 3);
        CHECK(((uintptr_t)st_find(s, "layer.a")->data & 3) == 0);
        CHECK(st_numel(st_find(s, "empty")) == 0);
        CHECK(st_metadata(s, "k") && !strcmp(st_metadata(s, "k"), "v"));
        st_close(s);
    }
    /* bad metadata and duplicate names are refused */
    CHECK(st_write(path, w, 1, ST_F32, "[1]", &err) == DEFT_ERR_USAGE);
    st_write_tensor_t dup[2] = {w[0], w[0]};
    CHECK(st_write(path, dup, 2, ST_F32, NULL, &err) == DEFT_ERR_USAGE);
    CHECK(st_write(path, w, 1, ST_I32, NULL, &err) == DEFT_ERR_USAGE);
    snprintf(tmp, sizeof tmp, "%s/no/such/dir/x.safetensors", tmpdir);
    CHECK(st_write(tmp, w, 1, ST_F32, NULL, &err) == DEFT_ERR_IO);
    CHECK(strstr(err.msg, "no/such/dir") != NULL);
}

/* A tensor longer than the writer's conversion chunk (2^20 values). */
static void test_large(void)
{
    enum { N = (1 << 21) + 3 };
    float *x = malloc(sizeof(float) * N), *back = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++)
        x[i] = (float)((double)next_u64() / 1.8e19 - 0.5) * (float)(1 + i % 1000);
    st_write_tensor_t w = {"big", 2, {3, 0}, x};
    w.shape[1] = N / 3;
    st_write_tensor_t tail = {"tail", 1, {N - 3 * (N / 3)}, x + 3 * (N / 3)};
    st_write_tensor_t both[2] = {w, tail};
    char path[512];
    snprintf(path, sizeof path, "%s/large.safetensors", tmpdir);
    deft_err_t err = {0};
    st_dtype_t dts[2] = {ST_F32, ST_BF16};
    for (int k = 0; k < 2; k++) {
        CHECK_MSG(st_write(path, both, 2, dts[k], NULL, &err) == 0, "%s", err.msg);
        st_set_t *s;
        CHECK_MSG(st_open(&s, path, &err) == 0, "%s", err.msg);
        if (!s)
            continue;
        st_to_f32(st_find(s, "big"), back);
        st_to_f32(st_find(s, "tail"), back + 3 * (N / 3));
        int bad = 0;
        for (int i = 0; i < N; i++) {
            /* bf16 keeps 8 significant bits: rounding error at most 2^-8 relative */
            double tol = dts[k] == ST_F32 ? 0.0 : fabs(x[i]) * 0x1p-8;
            bad += fabs(back[i] - x[i]) > tol;
        }
        CHECK_MSG(bad == 0, "%s: %d of %d values off", k ? "bf16" : "f32", bad, N);
        st_close(s);
    }
    free(x);
    free(back);
}

static void test_tinystories(void)
{
    st_set_t *s;
    deft_err_t err = {0};
    CHECK_MSG(st_open(&s, "data/models/TinyStories-656K", &err) == DEFT_OK, "%s", err.msg);
    if (!s)
        return;
    json_t *want = json_load_file(FIX "/tinystories.json", 0, NULL);
    CHECK(st_count(s) == (int)json_object_size(want) && st_count(s) == 20);
    const char *name;
    json_t *e;
    json_object_foreach(want, name, e) {
        const st_tensor_t *t = st_find(s, name);
        CHECK_MSG(t != NULL, "%s", name);
        if (!t)
            continue;
        float *v = to_f32(t);
        double sum = 0;
        for (int64_t i = 0; i < st_numel(t); i++)
            sum += v[i];
        CHECK_NEAR(sum, json_number_value(json_object_get(e, "sum")), 1e-9);
        json_t *first = json_object_get(e, "first");
        for (size_t i = 0; i < json_array_size(first); i++)
            CHECK(v[i] == (float)json_number_value(json_array_get(first, i)));
        free(v);
    }
    const char *alias = st_metadata(s, "model.embed_tokens.weight");
    CHECK(alias && !strcmp(alias, "lm_head.weight"));
    for (int i = 1; i < st_count(s); i++)
        CHECK(strcmp(st_at(s, i - 1)->name, st_at(s, i)->name) < 0);
    CHECK(st_at(s, -1) == NULL && st_at(s, st_count(s)) == NULL);
    json_decref(want);
    st_close(s);
}

// ----------------------------------------------------------------------------
// broken files

/* Writes 8-byte length + header + data_len zero bytes. */
static void make_file(const char *path, uint64_t hlen_field, const char *hdr, size_t data_len)
{
    size_t hl = strlen(hdr);
    char *buf = calloc(1, 8 + hl + data_len);
    memcpy(buf, &hlen_field, 8);
    memcpy(buf + 8, hdr, hl);
    write_all(path, buf, 8 + hl + data_len);
    free(buf);
}

static void expect_error(const char *label, uint64_t hlen, const char *hdr, size_t data_len,
                         deft_code_t code, const char *needle)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bad.safetensors", tmpdir);
    make_file(path, hlen, hdr, data_len);
    st_set_t *s = NULL;
    deft_err_t err = {0};
    int rc = st_open(&s, path, &err);
    CHECK_MSG(rc == (int)code && (s == NULL) == (code != DEFT_OK), "%s: rc %d: %s", label,
              rc, err.msg);
    if (code != DEFT_OK)
        CHECK_MSG(strstr(err.msg, needle) && strstr(err.msg, "bad.safetensors"),
                  "%s: message '%s' lacks '%s'", label, err.msg, needle);
    st_close(s);
}

static void test_errors(void)
{
    const char *ok = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t L = strlen(ok);
    expect_error("valid control", L, ok, 8, DEFT_OK, "");
    expect_error("header past EOF", L + 100, ok, 8, DEFT_ERR_FORMAT, "runs past");
    expect_error("huge header", 1ull << 40, ok, 8, DEFT_ERR_FORMAT, "limit");
    expect_error("data truncated", L, ok, 4, DEFT_ERR_FORMAT, "'w'");
    expect_error("malformed json", 10, "{\"w\":{\"dty", 0, DEFT_ERR_FORMAT, "malformed JSON");
    expect_error("not object", 3, "[1]", 0, DEFT_ERR_FORMAT, "not a JSON object");
    const char *bad_dtype = "{\"w\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,2]}}";
    expect_error("bad dtype", strlen(bad_dtype), bad_dtype, 2, DEFT_ERR_FORMAT, "'F8'");
    const char *mism = "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
    expect_error("shape mismatch", strlen(mism), mism, 8, DEFT_ERR_FORMAT, "need 12");
    const char *rev = "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}";
    expect_error("reversed", strlen(rev), rev, 8, DEFT_ERR_FORMAT, "begin > end");
    const char *ovl = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    expect_error("overlap", strlen(ovl), ovl, 12, DEFT_ERR_FORMAT, "overlap");
    const char *dup = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    expect_error("duplicate", strlen(dup), dup, 8, DEFT_ERR_FORMAT, "malformed JSON");
    const char *neg = "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}";
    expect_error("negative dim", strlen(neg), neg, 4, DEFT_ERR_FORMAT, "shape[0]");
    const char *big = "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],"
                      "\"data_offsets\":[0,0]}}";
    expect_error("numel overflow", strlen(big), big, 0, DEFT_ERR_FORMAT, "'w'");
    const char *meta = "{\"__metadata__\":[1]}";
    expect_error("bad metadata", strlen(meta), meta, 0, DEFT_ERR_FORMAT, "__metadata__");
    expect_error("empty file", 0, "", 0, DEFT_ERR_FORMAT, "malformed");

    char path[1024];
    snprintf(path, sizeof path, "%s/short.safetensors", tmpdir);
    write_all(path, "abc", 3);
    st_set_t *s;
    deft_err_t err = {0};
    CHECK(st_open(&s, path, &err) == DEFT_ERR_FORMAT && strstr(err.msg, "truncated"));
    CHECK(st_open(&s, "/nonexistent/x.safetensors", &err) == DEFT_ERR_IO);
    CHECK(st_open(&s, tmpdir, &err) == DEFT_ERR_IO && strstr(err.msg, "neither"));

    /* an index naming a tensor its shard lacks */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/badindex", tmpdir);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    make_file(path, L, ok, 8);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    const char *idx = "{\"weight_map\": {\"w\": \"a.safetensors\", \"q\": \"a.safetensors\"}}";
    write_all(path, idx, strlen(idx));
    CHECK(st_open(&s, dir, &err) == DEFT_ERR_FORMAT && strstr(err.msg, "'q'"));
    const char *esc = "{\"weight_map\": {\"w\": \"../a.safetensors\"}}";
    write_all(path, esc, strlen(esc));
    CHECK(st_open(&s, dir, &err) == DEFT_ERR_FORMAT && strstr(err.msg, "same folder"));
}

// ----------------------------------------------------------------------------
// mutation: random byte edits, insertions, deletions and truncations of real
// headers; each result must be an error with a message or a consistent set

static void check_consistent(const st_tensor_t *t, int n, size_t data_len)
{
    for (int i = 0; i < n; i++) {
        CHECK(t[i].name != NULL && t[i].ndim >= 0 && t[i].ndim <= 8);
        CHECK(t[i].nbytes <= data_len);
    }
}

static void mutate_headers(const char *file, int rounds)
{
    size_t len;
    char *raw = read_all(file, &len);
    CHECK(raw != NULL);
    if (!raw)
        return;
    uint64_t hlen;
    memcpy(&hlen, raw, 8);
    size_t data_len = len - 8 - hlen;
    char *buf = malloc(hlen + 64);
    int accepted = 0, refused = 0;
    for (int r = 0; r < rounds; r++) {
        size_t n = hlen;
        memcpy(buf, raw + 8, hlen);
        int edits = 1 + (int)(next_u64() % 4);
        for (int e = 0; e < edits && n > 0; e++) {
            size_t at = next_u64() % n;
            switch (next_u64() % 5) {
            case 0: buf[at] = (char)next_u64(); break;
            case 1: buf[at] = "{}[]\":,0123456789-e.\\ "[next_u64() % 23]; break;
            case 2: n = at; break;  /* truncation */
            case 3:
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            case 4:
                if (n < hlen + 60) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = "9,\"[{"[next_u64() % 5];
                    n++;
                }
                break;
            }
        }
        st_tensor_t *t = NULL;
        int nt = 0;
        deft_err_t err = {0};
        int rc = st_parse_header(buf, n, data_len, "mutant", &t, &nt, &err);
        if (rc == DEFT_OK) {
            accepted++;
            check_consistent(t, nt, data_len);
        } else {
            refused++;
            CHECK(rc == DEFT_ERR_FORMAT && err.msg[0] && t == NULL);
        }
        st_free_tensors(t, nt);
    }
    printf("%s: %d mutants accepted, %d refused\n", file, accepted, refused);
    CHECK(refused > rounds / 4);

    /* whole files: the length field, the header and the data size all vary */
    char path[512];
    snprintf(path, sizeof path, "%s/mutant.safetensors", tmpdir);
    char *fb = malloc(len);
    for (int r = 0; r < rounds / 10; r++) {
        memcpy(fb, raw, len);
        size_t flen = len;
        switch (r % 3) {
        case 0: fb[next_u64() % 8] ^= (char)(1 + next_u64() % 255); break;
        case 1: flen = next_u64() % len; break;
        case 2: fb[8 + next_u64() % hlen] = (char)next_u64(); break;
        }
        write_all(path, fb, flen);
        st_set_t *s = NULL;
        deft_err_t err = {0};
        if (st_open(&s, path, &err) == DEFT_OK) {
            for (int i = 0; i < st_count(s); i++)
                free(to_f32(st_at(s, i)));  /* touches every byte it claims */
            st_close(s);
        } else {
            CHECK(err.msg[0] != 0);
        }
    }
    free(fb);
    free(buf);
    free(raw);
}

static void rm_rf_tmp(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_mixed();
    check_sharded(FIX "/sharded");
    check_sharded(FIX "/sharded/model.safetensors.index.json");
    test_convert();
    test_roundtrip();
    test_large();
    test_tinystories();
    test_errors();
    mutate_headers(FIX "/mixed.safetensors", 3000);
    mutate_headers("data/models/TinyStories-656K/model.safetensors", 2000);
    rm_rf_tmp();
    TEST_DONE();
}
