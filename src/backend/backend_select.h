/* Picks the backend named by the `backend` config key: cpu, cuda, or auto
 * (the GPU when this build has the CUDA backend and a device answers, the
 * CPU otherwise). */
#ifndef DEFT_BACKEND_SELECT_H
#define DEFT_BACKEND_SELECT_H

#include "backend/backend.h"
#include "util/common.h"

/* name: "auto", "cpu" or "cuda". "cuda" fails with a message saying why when
 * the build has no CUDA backend or no device is usable; "auto" never fails
 * for those reasons and falls back to the CPU quietly. */
int backend_select(const char *name, const backend_t **be, deft_err_t *err);

#endif
