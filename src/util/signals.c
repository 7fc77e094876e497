/* SIGTERM/SIGUSR1 handlers that only record the signal: the handler does
 * nothing but async-signal-safe work (a sig_atomic_t store, sigaction and
 * raise), and the training loop decides what to do at its next step. */
#include "util/signals.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

static const int STOP_SIGNALS[2] = {SIGTERM, SIGUSR1};

static volatile sig_atomic_t pending;  /* first stop signal's number, 0 when none */
static struct sigaction previous[2];
static bool installed;

static void on_stop(int sig)
{
    if (pending == 0) {
        pending = sig;
        return;
    }
    /* asked again while we are still stopping: let the default action end us */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig);
}

int signals_install(deft_err_t *err)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 2; i++)
        sigaddset(&sa.sa_mask, STOP_SIGNALS[i]);
    /* SA_RESTART: a signal during a read or an MPI wait must not turn into EINTR */
    sa.sa_flags = SA_RESTART;
    for (int i = 0; i < 2; i++) {
        if (sigaction(STOP_SIGNALS[i], &sa, installed ? NULL : &previous[i]) != 0)
            return deft_fail(err, DEFT_ERR_INTERNAL, "cannot install a handler for %s: %s",
                             strsignal(STOP_SIGNALS[i]), strerror(errno));
    }
    installed = true;
    pending = 0;
    return DEFT_OK;
}

void signals_restore(void)
{
    if (!installed)
        return;
    for (int i = 0; i < 2; i++)
        sigaction(STOP_SIGNALS[i], &previous[i], NULL);
    installed = false;
}

int signals_stop_requested(void) { return pending; }

void signals_clear(void) { pending = 0; }
