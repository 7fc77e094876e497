/* The `backend` config key turned into an op table: the CPU backend always,
 * the CUDA one when the build has it (DEFT_HAVE_CUDA) and a device answers. */
#include <string.h>

#include "backend/backend_select.h"
#ifdef DEFT_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

int backend_select(const char *name, const backend_t **be, deft_err_t *err)
{
    *be = NULL;
    if (!name || !strcmp(name, "cpu")) {
        *be = backend_cpu();
        return DEFT_OK;
    }
    bool want_cuda = !strcmp(name, "cuda");
    if (!want_cuda && strcmp(name, "auto"))
        return deft_fail(err, DEFT_ERR_USAGE, "backend: unknown value '%s' (expected auto, cpu "
                         "or cuda)", name);
#ifdef DEFT_HAVE_CUDA
    deft_err_t why;
    if (backend_cuda_init(be, &why) == DEFT_OK)
        return DEFT_OK;
    if (want_cuda)
        return deft_fail(err, why.code, "backend: cuda: %s", why.msg);
#else
    if (want_cuda)
        return deft_fail(err, DEFT_ERR_USAGE, "backend: cuda: this deft was built without the "
                         "CUDA backend (rebuild where nvcc is found, or with -DDEFT_CUDA=ON)");
#endif
    *be = backend_cpu();
    return DEFT_OK;
}
