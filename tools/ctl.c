/* ctl.c — `asyncshim ctl PID enable|disable|clear|dump`: control a running
 * process's shim without restarting it.
 *
 * The command travels as a queued realtime signal (sigqueue: the value is
 * AS_CTL_MAGIC | command, preload/ctl_proto.h), which needs no fd in the
 * target, so it reaches daemons that closed every fd.  Before sending, ctl
 * checks in /proc/PID that the shim is loaded (its maps), which signal it
 * listens on (ctl_signal= in the ASYNCSHIM_OPTIONS it started with, default
 * SIGRTMAX-3) and that the process catches that signal (SigCgt): a process
 * that does not would be killed by it, so nothing is sent then.  The same
 * permission rules as kill(1) apply. */
#include "cli.h"
#include "../preload/ctl_proto.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define USAGE "usage: asyncshim ctl PID enable|disable|clear|dump"

static int fail(const char *fmt, long pid, const char *what)
{
	fprintf(stderr, "asyncshim ctl: ");
	fprintf(stderr, fmt, pid, what);
	fputc('\n', stderr);
	return 2;
}

/* Read /proc/PID/NAME whole (bounded); NULL with errno. */
static char *slurp(long pid, const char *name, size_t *len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/%s", pid, name);
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap + 1);
	while (buf) {
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0 || n < cap)
			break;
		if (cap >= (64u << 20))
			break;                  /* enough for any maps file we look at */
		char *p = realloc(buf, cap * 2 + 1);
		if (!p) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = p;
		cap *= 2;
	}
	int saved = errno;
	fclose(f);
	errno = saved;
	if (buf) {
		buf[n] = '\0';
		*len = n;
	}
	return buf;
}

/* ctl_signal= from the ASYNCSHIM_OPTIONS the process started with. */
static int signal_of(long pid)
{
	size_t len = 0;
	int sig = SIGRTMAX - AS_CTL_DEFAULT_SIGNAL_FROM_MAX;
	char *env = slurp(pid, "environ", &len);
	for (size_t i = 0; env && i < len; i += strlen(env + i) + 1) {
		const char *v = env + i;
		if (strncmp(v, "ASYNCSHIM_OPTIONS=", 18))
			continue;
		for (const char *p = strstr(v, "ctl_signal="); p; p = strstr(p + 1, "ctl_signal="))
			if (p == v + 18 || p[-1] == ':')
				sig = atoi(p + 11);
	}
	free(env);
	return sig;
}

/* Does the process catch SIG (SigCgt in /proc/PID/status)? */
static int catches(long pid, int sig)
{
	size_t len;
	char *st = slurp(pid, "status", &len);
	const char *p = st ? strstr(st, "\nSigCgt:") : NULL;
	int yes = 0;
	if (p) {
		unsigned long long mask = strtoull(p + 8, NULL, 16);
		yes = sig >= 1 && sig <= 64 && (mask >> (sig - 1) & 1);
	}
	free(st);
	return yes;
}

int cmd_ctl(int argc, char **argv)
{
	static const char *const cmds[] = { [AS_CTL_ENABLE] = "enable", [AS_CTL_DISABLE] = "disable",
					    [AS_CTL_CLEAR] = "clear", [AS_CTL_DUMP] = "dump" };
	if (argc != 3)
		return usage_error("ctl", USAGE);
	char *end;
	long pid = strtol(argv[1], &end, 10);
	if (*end || pid <= 0 || argv[1][0] == '\0')
		return usage_error("ctl", USAGE);
	int cmd = 0;
	for (int i = AS_CTL_ENABLE; i <= AS_CTL_DUMP; i++)
		if (!strcmp(argv[2], cmds[i]))
			cmd = i;
	if (!cmd)
		return usage_error("ctl", USAGE);

	size_t len;
	char *maps = slurp(pid, "maps", &len);
	if (!maps)
		return fail(errno == ENOENT ? "no process %ld%s" : "cannot read /proc/%ld/maps: %s", pid,
			    errno == ENOENT ? "" : strerror(errno));
	int loaded = strstr(maps, "libasyncshim") != NULL;
	free(maps);
	if (!loaded)
		return fail("process %ld does not run under asyncshim%s", pid, "");
	int sig = signal_of(pid);
	if (sig <= 0 || sig > 64)
		return fail("process %ld runs with ctl_signal=0%s: runtime control is off there", pid, "");
	if (!catches(pid, sig))
		return fail("process %ld does not catch its ctl signal (the program uses it, or the shim is "
			    "disabled there)%s; nothing sent", pid, "");
	union sigval v;
	v.sival_int = AS_CTL_MAGIC | cmd;
	if (sigqueue((pid_t)pid, sig, v) != 0)
		return fail("cannot signal process %ld: %s", pid, strerror(errno));
	fprintf(stderr, "asyncshim ctl: sent %s to process %ld (signal %d)\n", cmds[cmd], pid, sig);
	return 0;
}
