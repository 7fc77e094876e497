/* Stop requests from a batch system or an operator: SIGTERM (preemption,
 * scancel, kill), SIGUSR1 (Slurm's --signal warning before the time limit)
 * and, for the stages that ask for it, SIGINT (Ctrl-C) set a flag that a
 * long loop polls between units of work, so it can stop cleanly (training:
 * write a checkpoint) instead of dying mid-step. */
#ifndef DEFT_SIGNALS_H
#define DEFT_SIGNALS_H

#include "util/common.h"

/* Installs the handlers (again after signals_restore). A second stop signal
 * while one is pending restores the default action and re-raises it, so a
 * job stuck while checkpointing can still be ended. */
int signals_install(deft_err_t *err);

/* signals_install, and SIGINT too: for the stages that keep nothing on a
 * stop, where Ctrl-C should end them as cleanly as a batch system's signal.
 * Training leaves SIGINT alone (its default action ends the process). */
int signals_install_with_interrupt(deft_err_t *err);

/* Puts back the handlers that were there before signals_install. */
void signals_restore(void);

/* The first stop signal received since install or clear (SIGTERM, SIGUSR1
 * or, when installed, SIGINT), or 0. Only the ranks that got the signal see
 * it: a loop reduces it over all ranks (a max) before acting, so that every
 * rank stops at the same point (training: joins the same checkpoint). */
int signals_stop_requested(void);

void signals_clear(void);

#endif
