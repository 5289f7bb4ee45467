/* signal.c — sigaction and signal, so the program never notices the
 * handlers the shim installs on deadly signals to write its trace (see init.c):
 * asking for the disposition reports SIG_DFL, and installing a handler takes
 * the signal back from the shim. */
#include "shim.h"

#include <signal.h>
#include <string.h>

AS_REAL(int, sigaction, (int, const struct sigaction *, struct sigaction *));
AS_REAL(sighandler_t, signal, (int, sighandler_t));

AS_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	AS_RESOLVE(sigaction);
	if (AS_LIKELY(!as_signal_owned(sig)))
		return real_sigaction(sig, act, old);
	int r = real_sigaction(sig, act, old);
	if (r == 0 && old && old->sa_handler == (sighandler_t)as_term_handler_addr()) {
		memset(old, 0, sizeof(*old));
		old->sa_handler = SIG_DFL;
	}
	if (r == 0 && act)
		as_signal_release(sig);
	return r;
}

AS_EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
	AS_RESOLVE(signal);
	sighandler_t old = real_signal(sig, handler);
	if (old != SIG_ERR && as_signal_owned(sig)) {
		as_signal_release(sig);
		if (old == (sighandler_t)as_term_handler_addr())
			old = SIG_DFL;
	}
	return old;
}
