/* ctl.c — the signals that reach the shim from outside: asyncshim ctl's
 * commands and flight mode's dump signal.
 *
 * Why signals: they need no fd, so they keep working in daemons that close
 * every fd, and sigqueue() carries the command in its value.  asyncshim ctl
 * sends ctl_signal (default SIGRTMAX-3) with AS_CTL_MAGIC | command, only
 * after checking in /proc/PID that the shim is loaded and catches it.  The
 * handler, on whatever thread the kernel picks, only sets a bit and wakes
 * the collector thread, which carries the command out (collector.c).
 *
 * Like the deadly signals (init.c), the shim takes a signal only while the
 * program leaves it at SIG_DFL, reports SIG_DFL to the program, and hands it
 * back the moment the program installs its own handler (hooks/signal.c). */
#include "ctl.h"

#include <signal.h>
#include <string.h>

static unsigned pending;
static unsigned last_toggle;     /* enable or disable, whichever came last */
static int ctl_sig, flight_sig;

static void post(unsigned cmd)
{
	if (cmd == AS_CTL_ENABLE || cmd == AS_CTL_DISABLE)
		__atomic_store_n(&last_toggle, cmd, __ATOMIC_SEQ_CST);
	__atomic_or_fetch(&pending, 1u << cmd, __ATOMIC_SEQ_CST);
	as_collector_wake();
}

static void ctl_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	int saved = errno;
	if (sig == ctl_sig && si && si->si_code == SI_QUEUE &&
	    (si->si_value.sival_int & ~0xff) == AS_CTL_MAGIC) {
		unsigned cmd = (unsigned)si->si_value.sival_int & 0xff;
		if (cmd >= AS_CTL_ENABLE && cmd <= AS_CTL_DUMP)
			post(cmd);
	} else if (sig == flight_sig) {
		post(AS_CTL_FLIGHT_SIGNAL);
	}
	errno = saved;
}

static int take(int sig, const char *what)
{
	struct sigaction old, sa;
	if (as_sys_sigaction(sig, NULL, &old) != 0 || old.sa_handler != SIG_DFL) {
		as_warn("asyncshim: signal %d is the program's; no %s by signal", sig, what);
		return 0;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = ctl_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	if (as_sys_sigaction(sig, &sa, NULL) != 0)
		return 0;
	as_signal_own(sig, (void *)ctl_handler);
	return sig;
}

void as_ctl_start(void)
{
	if (as_cfg.ctl_signal)
		ctl_sig = take((int)as_cfg.ctl_signal, "asyncshim ctl");
	if (as_cfg.flight && as_cfg.flight_signal)
		flight_sig = take((int)as_cfg.flight_signal, "flight dumps");
}

unsigned as_ctl_take_pending(void)
{
	unsigned p = __atomic_exchange_n(&pending, 0, __ATOMIC_SEQ_CST);
	unsigned both = 1u << AS_CTL_ENABLE | 1u << AS_CTL_DISABLE;
	if ((p & both) == both)
		p &= ~both | 1u << __atomic_load_n(&last_toggle, __ATOMIC_SEQ_CST);
	return p;
}

void as_ctl_after_fork_child(void)
{
	pending = 0;
}
