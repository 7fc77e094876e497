/* Stop requests from a batch system or an operator: SIGTERM (preemption,
 * scancel, kill) and SIGUSR1 (Slurm's --signal warning before the time
 * limit) set a flag that the training loop polls between steps, so it can
 * write a checkpoint and exit cleanly instead of dying mid-step. */
#ifndef DEFT_SIGNALS_H
#define DEFT_SIGNALS_H

#include "util/common.h"

/* Installs the handlers (again after signals_restore). A second stop signal
 * while one is pending restores the default action and re-raises it, so a
 * job stuck while checkpointing can still be ended. */
int signals_install(deft_err_t *err);

/* Puts back the handlers that were there before signals_install. */
void signals_restore(void);

/* The first stop signal received since install or clear (SIGTERM or
 * SIGUSR1), or 0. Only the ranks that got the signal see it: the training
 * loop reduces it over all ranks (a max) before acting, so that every rank
 * joins the same checkpoint. */
int signals_stop_requested(void);

void signals_clear(void);

#endif
