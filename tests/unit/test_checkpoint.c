/* HDF5 checkpoints: exact-bit round trip of tensors and state, errors that
 * name file and dataset, detection of corrupt data, newest-good selection
 * past truncated and unfinished files, retention, and a writer SIGKILLed at
 * random moments that always leaves a good newest checkpoint behind. */
#include "io/checkpoint.h"
#include "test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// a small training state whose every value is a function of (step, tensor, index)

enum { NT = 3 };
static const char *const NAMES[NT] = {"model.embed_tokens.weight", "model.norm.weight",
                                      "model.layers.0.self_attn.q_proj.weight"};

typedef struct {
    ckpt_tensor_t p[NT], m[NT], v[NT];
    uint64_t rng[4];
    ckpt_tensors_t t;
    ckpt_state_t st;
} state_t;

static float value_at(int64_t step, int g, int k, int64_t i)
{
    uint32_t x = (uint32_t)(step * 2654435761u) ^ (uint32_t)(g * 97 + k * 13) ^
                 (uint32_t)(i * 2246822519u);
    x ^= x >> 15;
    x *= 0x2c1b3c6du;
    x ^= x >> 12;
    return (float)((int32_t)x) * 1e-9f;
}

/* big: each tensor about `big` floats, so a kill can land in the middle of a write */
static void state_init(state_t *s, int64_t step, int64_t big)
{
    memset(s, 0, sizeof *s);
    int64_t shapes[NT][3] = {{big / 64, 64, 0}, {64, 0, 0}, {4, big / 256, 64}};
    int ndims[NT] = {2, 1, 3};
    ckpt_tensor_t *sets[3] = {s->p, s->m, s->v};
    for (int g = 0; g < 3; g++)
        for (int k = 0; k < NT; k++) {
            ckpt_tensor_t *t = &sets[g][k];
            t->name = NAMES[k];
            t->ndim = ndims[k];
            int64_t n = 1;
            for (int d = 0; d < t->ndim; d++)
                n *= (t->shape[d] = shapes[k][d]);
            t->data = xmalloc(sizeof(float) * n);   /* row-major, shape above */
            for (int64_t i = 0; i < n; i++)
                t->data[i] = value_at(step, g, k, i);
        }
    for (int i = 0; i < 4; i++)
        s->rng[i] = 0x9e3779b97f4a7c15ull * (uint64_t)(step + i + 1);
    s->t = (ckpt_tensors_t){s->p, s->m, s->v, NT};
    s->st = (ckpt_state_t){.step = step, .epoch = step / 10, .epoch_pos = step % 10 * 8,
                           .rng = s->rng, .n_rng = 4,
                           .config_text = "train:\n  beta: 0.1\n  note: \"\xc3\xa9t\xc3\xa9\"\n",
                           .qdiff_checksum = "sha256:0123abcd"};
}

static void state_free(state_t *s)
{
    for (int k = 0; k < NT; k++) {
        free(s->p[k].data);
        free(s->m[k].data);
        free(s->v[k].data);
    }
}

/* A state of the same shapes with zeroed data, to load into. */
static void state_blank(state_t *dst, const state_t *like)
{
    *dst = *like;
    ckpt_tensor_t *sets[3] = {dst->p, dst->m, dst->v};
    for (int g = 0; g < 3; g++)
        for (int k = 0; k < NT; k++) {
            int64_t n = 1;
            for (int d = 0; d < sets[g][k].ndim; d++)
                n *= sets[g][k].shape[d];
            sets[g][k].data = xcalloc(n, sizeof(float));
        }
    dst->t = (ckpt_tensors_t){dst->p, dst->m, dst->v, NT};
}

static bool state_same_tensors(const state_t *a, const state_t *b)
{
    const ckpt_tensor_t *sa[3] = {a->p, a->m, a->v}, *sb[3] = {b->p, b->m, b->v};
    for (int g = 0; g < 3; g++)
        for (int k = 0; k < NT; k++) {
            int64_t n = 1;
            for (int d = 0; d < sa[g][k].ndim; d++)
                n *= sa[g][k].shape[d];
            if (memcmp(sa[g][k].data, sb[g][k].data, sizeof(float) * n))
                return false;
        }
    return true;
}

static char *make_dir(void)
{
    char *dir = xstrdup("/tmp/deft-ckpt-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    return dir;
}

static void remove_dir(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    free(dir);
}

static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    size_t ls = strlen(suffix);
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        n += !strncmp(e->d_name, "step-", 5) && l > ls && !strcmp(e->d_name + l - ls, suffix);
    }
    if (d)
        closedir(d);
    return n;
}

static bool same_bytes(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

static int64_t step_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? strtoll(s + 6, NULL, 10) : -1;
}

// ----------------------------------------------------------------------------
// round trip

static void test_round_trip(void)
{
    char *dir = make_dir();
    state_t a, b;
    state_init(&a, 1234, 4096);
    /* bit patterns a float conversion would lose */
    uint32_t odd[4] = {0x80000000u, 0x00000001u, 0x7fc12345u, 0xff800000u};
    memcpy(a.p[1].data, odd, sizeof odd);
    deft_err_t err = {0};
    char path[4096];
    CHECK_MSG(checkpoint_save(dir, &a.st, &a.t, 0, path, sizeof path, &err) == DEFT_OK, "%s",
              err.msg);
    CHECK(strstr(path, "/step-001234.h5") != NULL);
    CHECK(count_files(dir, ".tmp") == 0);
    /* the same state gives the same bytes (no timestamps in the file) */
    char *dir2 = make_dir(), path2[4096];
    CHECK(checkpoint_save(dir2, &a.st, &a.t, 0, path2, sizeof path2, &err) == DEFT_OK);
    CHECK(same_bytes(path, path2));
    remove_dir(dir2);

    state_blank(&b, &a);
    ckpt_state_t st;
    int rc = checkpoint_load(path, &st, &b.t, &err);
    CHECK_MSG(rc == DEFT_OK, "%s", err.msg);
    if (rc)
        exit(1);
    CHECK(state_same_tensors(&a, &b));
    CHECK(st.step == 1234 && st.epoch == 123 && st.epoch_pos == 32);
    CHECK(st.n_rng == 4 && !memcmp(st.rng, a.rng, sizeof a.rng));
    CHECK(!strcmp(st.config_text, a.st.config_text));
    CHECK(!strcmp(st.qdiff_checksum, "sha256:0123abcd"));
    CHECK(st.deft_version && st.deft_version[0]);
    checkpoint_state_free(&st);
    CHECK(checkpoint_validate(path, true, &err) == DEFT_OK);

    /* a shape the model does not have: the message names file, dataset and both shapes */
    b.p[2].shape[1] += 1;
    CHECK(checkpoint_load(path, &st, &b.t, &err) == DEFT_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, "/params/" "model.layers.0") &&
              strstr(err.msg, "(4, 16, 64)") && strstr(err.msg, "(4, 17, 64)"), "%s", err.msg);
    b.p[2].shape[1] -= 1;
    /* a tensor the file lacks */
    b.m[0].name = "model.missing.weight";
    CHECK(checkpoint_load(path, &st, &b.t, &err) == DEFT_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "/m/model.missing.weight") != NULL, "%s", err.msg);
    b.m[0].name = NAMES[0];

    /* one flipped byte in a tensor's data: structure still fine, checksum is not */
    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(fid, "/v/model.embed_tokens.weight", H5P_DEFAULT);
    haddr_t off = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(fid);
    CHECK(off != HADDR_UNDEF);
    int fd = open(path, O_RDWR);
    unsigned char byte;
    CHECK(pread(fd, &byte, 1, (off_t)off + 101) == 1);
    byte ^= 0x10;
    CHECK(pwrite(fd, &byte, 1, (off_t)off + 101) == 1);
    close(fd);
    CHECK(checkpoint_validate(path, false, &err) == DEFT_OK);
    CHECK(checkpoint_validate(path, true, &err) == DEFT_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "/v/model.embed_tokens.weight") && strstr(err.msg, "CRC"),
              "%s", err.msg);
    CHECK(checkpoint_load(path, &st, &b.t, &err) == DEFT_ERR_FORMAT);

    /* a bad tensor name is refused before anything is written */
    a.p[0].name = "bad/name";
    CHECK(checkpoint_save(dir, &a.st, &a.t, 0, NULL, 0, &err) == DEFT_ERR_INTERNAL);
    CHECK(count_files(dir, ".tmp") == 0);
    a.p[0].name = NAMES[0];
    state_free(&a);
    state_free(&b);
    remove_dir(dir);
}

// ----------------------------------------------------------------------------
// newest good, retention

static void test_latest_and_retention(void)
{
    char *dir = make_dir();
    deft_err_t err = {0};
    char *latest = NULL;
    CHECK(checkpoint_find_latest(dir, true, &latest, &err) == DEFT_OK && latest == NULL);
    char path[4096];
    for (int64_t step = 1; step <= 3; step++) {
        state_t s;
        state_init(&s, step, 2048);
        CHECK(checkpoint_save(dir, &s.st, &s.t, 0, path, sizeof path, &err) == DEFT_OK);
        state_free(&s);
    }
    /* step 3 cut in half, an unfinished step 4, and garbage under a good name */
    struct stat sb;
    CHECK(stat(path, &sb) == 0);
    CHECK(truncate(path, sb.st_size / 2) == 0);
    char junk[4096];
    snprintf(junk, sizeof junk, "%s/step-000004.h5.tmp", dir);
    FILE *f = fopen(junk, "w");
    fputs("partial", f);
    fclose(f);
    snprintf(junk, sizeof junk, "%s/step-000005.h5", dir);
    f = fopen(junk, "w");
    fputs("not an HDF5 file at all", f);
    fclose(f);
    CHECK(checkpoint_validate(path, false, &err) != DEFT_OK);
    CHECK(checkpoint_find_latest(dir, false, &latest, &err) == DEFT_OK);
    CHECK_MSG(latest && step_of(latest) == 2, "%s", latest ? latest : "(none)");
    free(latest);

    /* retention: keep 2; the stray .tmp goes too, but only after a good write */
    for (int64_t step = 6; step <= 9; step++) {
        state_t s;
        state_init(&s, step, 2048);
        CHECK(checkpoint_save(dir, &s.st, &s.t, 2, path, sizeof path, &err) == DEFT_OK);
        state_free(&s);
        CHECK(count_files(dir, ".h5") == 2);
        CHECK(count_files(dir, ".tmp") == 0);
    }
    CHECK(checkpoint_find_latest(dir, true, &latest, &err) == DEFT_OK);
    CHECK(latest && step_of(latest) == 9);
    free(latest);
    checkpoint_path(path, sizeof path, dir, 8);
    CHECK(access(path, F_OK) == 0);
    checkpoint_path(path, sizeof path, dir, 7);
    CHECK(access(path, F_OK) != 0);
    remove_dir(dir);
}

// ----------------------------------------------------------------------------
// SIGKILL during writes

enum { CRASH_BIG = 1 << 17, CRASH_KEEP = 3 };

/* The child: resume from the newest good checkpoint and write more, forever. */
static void crash_writer(const char *dir)
{
    deft_err_t err = {0};
    char *latest = NULL;
    int64_t step = 0;
    if (checkpoint_find_latest(dir, false, &latest, &err))
        _exit(20);
    if (latest) {
        ckpt_state_t st;
        if (checkpoint_load(latest, &st, NULL, &err))
            _exit(21);
        step = st.step;
        checkpoint_state_free(&st);
        free(latest);
    }
    for (;;) {
        state_t s;
        state_init(&s, ++step, CRASH_BIG);
        if (checkpoint_save(dir, &s.st, &s.t, CRASH_KEEP, NULL, 0, &err))
            _exit(22);
        state_free(&s);
    }
}

/* Every complete checkpoint holds exactly the state of its step. */
static int64_t crash_check(const char *dir)
{
    deft_err_t err = {0};
    char *latest = NULL;
    CHECK(checkpoint_find_latest(dir, true, &latest, &err) == DEFT_OK);
    if (!latest)
        return 0;
    int64_t newest = step_of(latest);
    free(latest);
    int complete = 0;
    for (int64_t step = newest; step >= 1 && step > newest - 2 * CRASH_KEEP; step--) {
        char path[4096];
        checkpoint_path(path, sizeof path, dir, step);
        if (access(path, F_OK) != 0)
            continue;
        complete++;
        state_t want, got;
        state_init(&want, step, CRASH_BIG);
        state_blank(&got, &want);
        ckpt_state_t st;
        int rc = checkpoint_load(path, &st, &got.t, &err);
        CHECK_MSG(rc == DEFT_OK, "%s", err.msg);
        CHECK(st.step == step && st.n_rng == 4 && !memcmp(st.rng, want.rng, sizeof want.rng));
        CHECK_MSG(state_same_tensors(&want, &got), "step %lld differs", (long long)step);
        checkpoint_state_free(&st);
        state_free(&want);
        state_free(&got);
    }
    /* between a commit and the retention pass there can be one more */
    CHECK_MSG(complete >= 1 && complete <= CRASH_KEEP + 1, "%d complete", complete);
    return newest;
}

static void test_sigkill(void)
{
    char *dir = make_dir();
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int64_t last = 0;
    int kills = 8, round;
    /* a loaded machine may write less per round: go on (boundedly) until there is history */
    for (round = 0; (round < kills || last < 2) && round < 40; round++) {
        pid_t pid = fork();
        if (pid == 0)
            crash_writer(dir);
        /* 30..230 ms: long enough for a few checkpoints, landing anywhere in one */
        usleep(30000 + (useconds_t)(rand() % 200000));
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "writer ended on its own: status %d", status);
        int64_t newest = crash_check(dir);
        CHECK_MSG(newest >= last, "newest step went back from %lld to %lld", (long long)last,
                  (long long)newest);
        last = newest;
    }
    CHECK_MSG(last >= 2, "only %lld checkpoints in %d rounds", (long long)last, round);
    printf("sigkill: %d kills, newest good checkpoint step %lld\n", round, (long long)last);
    remove_dir(dir);
}

int main(void)
{
    test_round_trip();
    test_latest_and_retention();
    test_sigkill();
    TEST_DONE();
}
