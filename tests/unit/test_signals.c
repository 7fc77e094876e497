/* Stop-signal handlers: SIGTERM and SIGUSR1 (and SIGINT in the interrupt
 * form) set the polled flag instead of killing the process, clear and
 * restore work, and a second signal while one is pending ends the process
 * with the default action. */
#include "util/signals.h"
#include "test_util.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_flag(void)
{
    deft_err_t err = {0};
    CHECK(signals_install(&err) == DEFT_OK);
    CHECK(signals_stop_requested() == 0);
    raise(SIGUSR1);
    CHECK(signals_stop_requested() == SIGUSR1);
    signals_clear();
    CHECK(signals_stop_requested() == 0);
    raise(SIGTERM);
    CHECK(signals_stop_requested() == SIGTERM);
    signals_clear();
    /* installing twice keeps the first saved handlers for restore */
    CHECK(signals_install(&err) == DEFT_OK);
    raise(SIGTERM);
    CHECK(signals_stop_requested() == SIGTERM);
    signals_clear();
    signals_restore();
}

static void test_restore(void)
{
    signal(SIGUSR1, SIG_IGN);
    deft_err_t err = {0};
    CHECK(signals_install(&err) == DEFT_OK);
    signals_restore();
    raise(SIGUSR1);  /* ignored again, so the process lives and no flag is set */
    CHECK(signals_stop_requested() == 0);
    signal(SIGUSR1, SIG_DFL);
}

static void test_second_signal_kills(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        deft_err_t err = {0};
        if (signals_install(&err))
            _exit(10);
        raise(SIGTERM);
        if (signals_stop_requested() != SIGTERM)
            _exit(11);
        raise(SIGTERM);   /* a pending stop: the default action ends the child */
        _exit(12);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM, "status %d", status);
}

static void test_kill_from_outside(void)
{
    /* a signal from another process, arriving while the child sleeps */
    int fd[2];
    CHECK(pipe(fd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        deft_err_t err = {0};
        if (signals_install(&err))
            _exit(10);
        if (write(fd[1], "r", 1) != 1)
            _exit(13);
        for (int i = 0; i < 500 && !signals_stop_requested(); i++)
            usleep(10000);
        _exit(signals_stop_requested() == SIGUSR1 ? 0 : 14);
    }
    close(fd[1]);
    char c;
    CHECK(read(fd[0], &c, 1) == 1);
    close(fd[0]);
    CHECK(kill(pid, SIGUSR1) == 0);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
}

static void test_interrupt(void)
{
    /* training's form leaves SIGINT as it was (here: ignored) */
    signal(SIGINT, SIG_IGN);
    deft_err_t err = {0};
    CHECK(signals_install(&err) == DEFT_OK);
    raise(SIGINT);
    CHECK(signals_stop_requested() == 0);
    /* the interrupt form catches it, and restore puts the ignore back */
    CHECK(signals_install_with_interrupt(&err) == DEFT_OK);
    raise(SIGINT);
    CHECK(signals_stop_requested() == SIGINT);
    signals_clear();
    raise(SIGTERM);
    CHECK(signals_stop_requested() == SIGTERM);
    signals_clear();
    signals_restore();
    raise(SIGINT);
    CHECK(signals_stop_requested() == 0);
    signal(SIGINT, SIG_DFL);
}

int main(void)
{
    test_flag();
    test_restore();
    test_second_signal_kills();
    test_kill_from_outside();
    test_interrupt();
    TEST_DONE();
}
