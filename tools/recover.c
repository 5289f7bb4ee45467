/* recover.c — `asyncshim recover TRACE...`: finish the trace of a process
 * that was killed (SIGKILL, OOM killer) before it could.
 *
 * The events its collector had not written yet are still in its rings in
 * /dev/shm (preload/shm.c; the header's "rings" names them).  Decoding them
 * takes the collector's own code, so a helper process preloads the shim
 * with ASYNCSHIM_RECOVER set: the shim's constructor appends the records and
 * an end record ("killed") to TRACE, removes the files and exits before the
 * helper's program (/bin/false) ever runs. */
#include "cli.h"
#include "trace.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct header_info {
	char rings[256];
	int64_t pid;
	int have_header;
};

static int visit(const msgpack_object *obj, uint64_t index, void *ctx, char *err, size_t errlen)
{
	struct header_info *h = ctx;
	(void)err, (void)errlen;
	if (index != 0)
		return 0;
	h->have_header = 1;
	if (mp_str(obj, "rings", h->rings, sizeof(h->rings)) != 0)
		h->rings[0] = '\0';
	if (mp_i64(obj, "pid", &h->pid) != 0)
		h->pid = 0;
	return 0;
}

/* Alive and not a zombie waiting for its parent. */
static int running(pid_t pid)
{
	char path[64], buf[512];
	if (kill(pid, 0) != 0 && errno != EPERM)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	return !p || (p[1] == ' ' && p[2] != 'Z' && p[2] != 'X');
}

static int run_helper(const char *lib, const char *prefix, const char *trace)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		setenv("ASYNCSHIM_RECOVER", prefix, 1);
		setenv("ASYNCSHIM_RECOVER_TRACE", trace, 1);
		setenv("LD_PRELOAD", lib, 1);
		unsetenv("ASYNCSHIM_OPTIONS");
		execl("/bin/false", "false", (char *)NULL);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int recover_trace(const char *lib, const char *trace, int quiet)
{
	struct header_info h;
	char err[512] = "", proc[300];
	memset(&h, 0, sizeof(h));
	/* a killed process's trace ends wherever its last write did; the
	 * header is all that is needed */
	if (trace_stream(trace, visit, &h, err, sizeof(err)) != 0 && !h.have_header) {
		fprintf(stderr, "asyncshim recover: %s: %s\n", trace, err);
		return 2;
	}
	if (!h.rings[0]) {
		fprintf(stderr, "asyncshim recover: %s: recorded without shared rings (no usable /dev/shm, or flight mode)\n",
			trace);
		return 2;
	}
	snprintf(proc, sizeof(proc), "%s.proc", h.rings);
	if (access(proc, F_OK) != 0) {
		if (quiet)
			return 0;
		fprintf(stderr, "asyncshim recover: %s: nothing to recover (the process ended normally, or was recovered)\n",
			trace);
		return 0;
	}
	if (h.pid > 0 && running((pid_t)h.pid)) {
		fprintf(stderr, "asyncshim recover: %s: process %lld is still running\n", trace, (long long)h.pid);
		return 2;
	}
	if (run_helper(lib, h.rings, trace) != 0) {
		fprintf(stderr, "asyncshim recover: %s: the recovery failed (see above)\n", trace);
		return 2;
	}
	return 0;
}

int cmd_recover(int argc, char **argv)
{
	char lib[4096];
	if (argc < 2 || argv[1][0] == '-')
		return usage_error("recover", "usage: asyncshim recover TRACE...");
	if (find_library(lib, sizeof(lib)) != 0)
		return usage_error("recover", "cannot find libasyncshim.so next to this program");
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		int r = recover_trace(lib, argv[i], 0);
		rc = r > rc ? r : rc;
	}
	return rc;
}
