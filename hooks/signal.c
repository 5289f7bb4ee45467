/* signal.c — sigaction and signal, so the program never notices the
 * handlers the shim installs on deadly signals to write its trace (see init.c):
 * asking for the disposition reports SIG_DFL, and installing a handler takes
 * the signal back from the shim.  The stall-sampling signal stays the shim's:
 * the program's action for it is recorded, reported back and run for every
 * delivery the shim did not send (preload/watchdog.c).
 * sysv_signal, sigset and signal's other names (bsd_signal, ssignal) go the
 * same way: glibc makes them with its internal sigaction, past the hook.
 * sigprocmask and pthread_sigmask tell preload/raw.c whether the thread
 * still lets that signal in. */
#include "shim.h"

#include <signal.h>
#include <string.h>

AS_REAL(int, sigaction, (int, const struct sigaction *, struct sigaction *));
AS_REAL(sighandler_t, signal, (int, sighandler_t));
AS_REAL(int, sigprocmask, (int, const sigset_t *, sigset_t *));
AS_REAL(int, pthread_sigmask, (int, const sigset_t *, sigset_t *));
AS_REAL(sighandler_t, sysv_signal, (int, sighandler_t));
AS_REAL(sighandler_t, sigset, (int, sighandler_t));

/* A signal whose disposition the program must not see as it is. */
static int shim_signal(int sig)
{
	return as_sample_signal(sig) || as_signal_owned(sig);
}

AS_EXPORT AS_NO_TSAN int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	AS_RESOLVE(sigaction);
	if (AS_UNLIKELY(as_sample_signal(sig)))
		return as_sample_sigaction(sig, act, old);   /* preload/watchdog.c */
	if (AS_LIKELY(!as_signal_owned(sig)))
		return real_sigaction(sig, act, old);
	int r = real_sigaction(sig, act, old);
	if (r == 0 && old && (void *)old->sa_handler == as_own_handler(sig)) {
		memset(old, 0, sizeof(*old));
		old->sa_handler = SIG_DFL;
	}
	if (r == 0 && act)
		as_signal_release(sig);
	return r;
}

AS_EXPORT AS_NO_TSAN sighandler_t signal(int sig, sighandler_t handler)
{
	AS_RESOLVE(signal);
	if (AS_UNLIKELY(as_sample_signal(sig))) {
		/* glibc's signal(): BSD semantics */
		struct sigaction sa, old;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = handler;
		sa.sa_flags = SA_RESTART;
		sigemptyset(&sa.sa_mask);
		sigaddset(&sa.sa_mask, sig);
		return as_sample_sigaction(sig, &sa, &old) == 0 ? old.sa_handler : SIG_ERR;
	}
	sighandler_t old = real_signal(sig, handler);
	if (old != SIG_ERR && as_signal_owned(sig)) {
		as_signal_release(sig);
		if ((void *)old == as_own_handler(sig))
			old = SIG_DFL;
	}
	return old;
}

/* glibc's other names for signal(): one function there, one here. */
AS_EXPORT AS_NO_TSAN sighandler_t bsd_signal(int sig, sighandler_t handler)
{
	return signal(sig, handler);
}

AS_EXPORT AS_NO_TSAN sighandler_t ssignal(int sig, sighandler_t handler)
{
	return signal(sig, handler);
}

/* glibc calls its own sigaction inside these, past the hook above: for the
 * shim's signals they are made here, as glibc makes them, through it. */
AS_EXPORT AS_NO_TSAN sighandler_t sysv_signal(int sig, sighandler_t handler)
{
	AS_RESOLVE(sysv_signal);
	if (AS_LIKELY(!shim_signal(sig)) || handler == SIG_ERR)
		return real_sysv_signal(sig, handler);
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = (int)(SA_RESETHAND | SA_NODEFER | SA_INTERRUPT);
	return sigaction(sig, &sa, &old) == 0 ? old.sa_handler : SIG_ERR;
}
/* what signal() is for programs built for strict POSIX */
AS_EXPORT sighandler_t __sysv_signal(int, sighandler_t) __attribute__((alias("sysv_signal")));

AS_EXPORT AS_NO_TSAN sighandler_t sigset(int sig, sighandler_t disp)
{
	AS_RESOLVE(sigset);
	if (AS_LIKELY(!shim_signal(sig)))
		return real_sigset(sig, disp);
	sigset_t set, old_mask;
	struct sigaction old;
	sigemptyset(&set);
	sigaddset(&set, sig);
	if (disp == SIG_HOLD) {
		if (sigprocmask(SIG_BLOCK, &set, &old_mask) < 0)
			return SIG_ERR;
		if (sigismember(&old_mask, sig))
			return SIG_HOLD;
		return sigaction(sig, NULL, &old) == 0 ? old.sa_handler : SIG_ERR;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = disp;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, &old) < 0 || sigprocmask(SIG_UNBLOCK, &set, &old_mask) < 0)
		return SIG_ERR;
	return sigismember(&old_mask, sig) ? SIG_HOLD : old.sa_handler;
}

/* The mask calls' results pass through: sigprocmask says -1 and errno,
 * pthread_sigmask returns the error; both return 0 on success. */
static int mask_set(int r, int how, const sigset_t *set)
{
	if (r == 0)
		as_raw_mask_changed(how, set);
	return r;
}

AS_EXPORT AS_NO_TSAN int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	AS_RESOLVE(sigprocmask);
	return mask_set(real_sigprocmask(how, set, old), how, set);
}

AS_EXPORT AS_NO_TSAN int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	AS_RESOLVE(pthread_sigmask);
	return mask_set(real_pthread_sigmask(how, set, old), how, set);
}

/* ---- signal waits ----
 * sigtimedwait with a zero timeout only polls: not timed. */
AS_REAL(int, sigwaitinfo, (const sigset_t *, siginfo_t *));
AS_REAL(int, sigtimedwait, (const sigset_t *, siginfo_t *, const struct timespec *));

AS_EXPORT int sigwaitinfo(const sigset_t *set, siginfo_t *info)
{
	AS_RESOLVE(sigwaitinfo);
	AS_TIMED_CALL_NB(int, AS_CALL_SIGWAITINFO, -1, 0, real_sigwaitinfo(set, info));
}

AS_EXPORT int sigtimedwait(const sigset_t *set, siginfo_t *info, const struct timespec *timeout)
{
	AS_RESOLVE(sigtimedwait);
	AS_TIMED_CALL_NB(int, AS_CALL_SIGTIMEDWAIT, -1, timeout && !timeout->tv_sec && !timeout->tv_nsec,
			 real_sigtimedwait(set, info, timeout));
}
