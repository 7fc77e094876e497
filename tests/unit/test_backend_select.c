/* backend_select: the `backend` config key's values map to the CPU table, the
 * CUDA one where built and present, or an error naming the problem. */
#include <string.h>

#include "backend/backend_select.h"
#include "test_util.h"

int main(void)
{
    deft_err_t err = {0};
    const backend_t *be = NULL;

    CHECK(backend_select("cpu", &be, &err) == 0 && be == backend_cpu());

    err.msg[0] = 0;
    CHECK(backend_select("tpu", &be, &err) == DEFT_ERR_USAGE && be == NULL);
    CHECK_MSG(strstr(err.msg, "'tpu'") != NULL, "message: %s", err.msg);

    /* auto never fails for lack of a GPU: the CPU stands in */
    CHECK(backend_select("auto", &be, &err) == 0 && be != NULL);
    bool have_gpu = be != NULL && be != backend_cpu();
    if (have_gpu)
        CHECK(strcmp(be->name, "cuda") == 0);

    int rc = backend_select("cuda", &be, &err);
    if (have_gpu) {
        CHECK(rc == 0 && be != NULL && strcmp(be->name, "cuda") == 0);
    } else {
        CHECK(rc != 0 && be == NULL);
        CHECK_MSG(strstr(err.msg, "backend: cuda:") != NULL, "message: %s", err.msg);
#ifndef DEFT_HAVE_CUDA
        CHECK_MSG(strstr(err.msg, "without the CUDA backend") != NULL, "message: %s", err.msg);
#endif
        printf("cuda unavailable: %s\n", err.msg);
    }
    TEST_DONE();
}
