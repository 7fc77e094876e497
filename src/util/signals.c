/* SIGTERM/SIGUSR1 (and optionally SIGINT) handlers that only record the
 * signal: the handler does nothing but async-signal-safe work (a sig_atomic_t
 * store, sigaction and raise), and the polling loop decides what to do at its
 * next step. */
#include "util/signals.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

/* SIGINT last: signals_install takes the first two, the interrupt form all three */
static const int STOP_SIGNALS[3] = {SIGTERM, SIGUSR1, SIGINT};

static volatile sig_atomic_t pending;  /* first stop signal's number, 0 when none */
static struct sigaction previous[3];
static int ninstalled;  /* handlers in place: STOP_SIGNALS[0 .. ninstalled) */

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

static int install(int n, deft_err_t *err)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < n; i++)
        sigaddset(&sa.sa_mask, STOP_SIGNALS[i]);
    /* SA_RESTART: a signal during a read or an MPI wait must not turn into EINTR */
    sa.sa_flags = SA_RESTART;
    for (int i = 0; i < n; i++) {
        /* keep the first-saved handler of a signal already ours */
        if (sigaction(STOP_SIGNALS[i], &sa, i < ninstalled ? NULL : &previous[i]) != 0)
            return deft_fail(err, DEFT_ERR_INTERNAL, "cannot install a handler for %s: %s",
                             strsignal(STOP_SIGNALS[i]), strerror(errno));
        if (i >= ninstalled)
            ninstalled = i + 1;
    }
    pending = 0;
    return DEFT_OK;
}

int signals_install(deft_err_t *err) { return install(2, err); }

int signals_install_with_interrupt(deft_err_t *err) { return install(3, err); }

void signals_restore(void)
{
    for (int i = 0; i < ninstalled; i++)
        sigaction(STOP_SIGNALS[i], &previous[i], NULL);
    ninstalled = 0;
}

int signals_stop_requested(void) { return pending; }

void signals_clear(void) { pending = 0; }
