/* host_signals FUNCTION SIG: install a handler for SIG with FUNCTION
 * (sigset, sysv_signal, __sysv_signal, bsd_signal, ssignal, signal), then
 * again; print what each call said the old disposition was:
 * "dfl", "ign", "hold", "err", "mine" (the handler of the first call) or
 * "other".  Bare, the first is "dfl" and the second "mine". */
#define _GNU_SOURCE
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"  /* sigset is what it tests */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* declared by no header this program builds with (or deprecated there) */
extern sighandler_t __sysv_signal(int, sighandler_t);
extern sighandler_t bsd_signal(int, sighandler_t);
extern sighandler_t sigset(int, sighandler_t);

static void mine(int sig)
{
	(void)sig;
}

static sighandler_t call(const char *fn, int sig, sighandler_t h)
{
	if (!strcmp(fn, "sigset"))
		return sigset(sig, h);
	if (!strcmp(fn, "sysv_signal"))
		return sysv_signal(sig, h);
	if (!strcmp(fn, "__sysv_signal"))
		return __sysv_signal(sig, h);
	if (!strcmp(fn, "bsd_signal"))
		return bsd_signal(sig, h);
	if (!strcmp(fn, "ssignal"))
		return ssignal(sig, h);
	return signal(sig, h);
}

static const char *name(sighandler_t h)
{
	if (h == SIG_DFL)
		return "dfl";
	if (h == SIG_IGN)
		return "ign";
	if (h == SIG_HOLD)
		return "hold";
	if (h == SIG_ERR)
		return "err";
	return h == mine ? "mine" : "other";
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	int sig = strcmp(argv[2], "rtmax-4") ? atoi(argv[2]) : SIGRTMAX - 4;
	const char *first = name(call(argv[1], sig, mine));
	const char *second = name(call(argv[1], sig, mine));
	printf("%s %s\n", first, second);
	return 0;
}
