/* recover.c — `asyncshim recover TRACE...`: finish the trace of a process
 * that was killed (SIGKILL, OOM killer) before it could.
 *
 * The events its collector had not written yet are still in its rings in
 * /dev/shm (preload/shm.c; the header's "rings" names them).  Decoding them
 * takes the collector's own code, so a helper process preloads the shim
 * with ASYNCSHIM_RECOVER set: the shim's constructor appends the records and
 * an end record ("killed") to TRACE, removes the files and exits before the
 * helper's program (/bin/false) ever runs.
 *
 * The helper appends to a copy of TRACE that replaces it only when the
 * recovery worked; it uses only ring files of TRACE's owner (preload/shm.c
 * checks them), and only those in /dev/shm. */
#include "cli.h"
#include "trace.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
	if (mp_str(obj, AS_K_rings, h->rings, sizeof(h->rings)) != 0)
		h->rings[0] = '\0';
	if (mp_i64(obj, AS_K_pid, &h->pid) != 0)
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

/* The header's "rings" is /dev/shm/asyncshim.PID.INODE and nothing else
 * (no "..", no other directory): the helper reads and removes files there. */
static int valid_rings(const char *s)
{
	const char *p = "/dev/shm/asyncshim.";
	if (strncmp(s, p, strlen(p)))
		return 0;
	s += strlen(p);
	size_t n = strspn(s, "0123456789");
	if (n == 0 || n > 9 || s[n] != '.')
		return 0;
	s += n + 1;
	n = strspn(s, "0123456789");
	return n > 0 && n <= 20 && !s[n];
}

/* STATUS >= 0: the exit status of a process that ended by a raw exit_group */
static int run_helper(const char *lib, const char *prefix, const char *trace, const char *name, uid_t owner,
		      int status)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		char uid[32];
		snprintf(uid, sizeof(uid), "%u", (unsigned)owner);
		setenv("ASYNCSHIM_RECOVER", prefix, 1);
		setenv("ASYNCSHIM_RECOVER_TRACE", trace, 1);
		setenv("ASYNCSHIM_RECOVER_NAME", name, 1);
		setenv("ASYNCSHIM_RECOVER_OWNER", uid, 1);
		unsetenv("ASYNCSHIM_RECOVER_STATUS");
		if (status >= 0) {
			char s[16];
			snprintf(s, sizeof(s), "%d", status);
			setenv("ASYNCSHIM_RECOVER_STATUS", s, 1);
		}
		setenv("LD_PRELOAD", lib, 1);
		unsetenv("ASYNCSHIM_OPTIONS");
		execl("/bin/false", "false", (char *)NULL);
		_exit(127);
	}
	int ws;
	while (waitpid(pid, &ws, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(ws) && WEXITSTATUS(ws) == 0 ? 0 : -1;
}

/* TRACE copied to a new file beside it, owned like it, named in TMP:
 * the helper appends there, and only a recovery that worked replaces
 * TRACE.  The fd of TRACE, SRC, is the one whose owner was checked. */
static int copy_aside(int src, const struct stat *st, const char *trace, char *tmp, size_t len)
{
	snprintf(tmp, len, "%s.recover.%d", trace, (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	char buf[65536];
	ssize_t n;
	while ((n = read(src, buf, sizeof(buf))) > 0)
		if (write(fd, buf, (size_t)n) != n)
			break;
	if (n != 0 || (getuid() == 0 && fchown(fd, st->st_uid, st->st_gid) != 0) || fsync(fd) != 0) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	return 0;
}

static int recover_into(const char *lib, const char *rings, const char *trace, int status)
{
	char tmp[PATH_MAX + 32];
	struct stat st;
	int fd = open(trace, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "asyncshim recover: %s: not a regular file\n", trace);
		if (fd >= 0)
			close(fd);
		return 2;
	}
	/* the rings must be the trace's owner's, and so must the trace be
	 * the caller's, unless the caller is root */
	if (getuid() != 0 && st.st_uid != getuid()) {
		close(fd);
		fprintf(stderr, "asyncshim recover: %s: not yours (owner uid %u)\n", trace, (unsigned)st.st_uid);
		return 2;
	}
	int r = copy_aside(fd, &st, trace, tmp, sizeof(tmp));
	close(fd);
	if (r != 0) {
		fprintf(stderr, "asyncshim recover: %s: cannot write a copy beside it: %s\n", trace, strerror(errno));
		return 2;
	}
	if (run_helper(lib, rings, tmp, trace, st.st_uid, status) != 0) {
		unlink(tmp);
		fprintf(stderr, "asyncshim recover: %s: the recovery failed (see above); the trace is unchanged\n", trace);
		return 2;
	}
	if (rename(tmp, trace) != 0) {
		fprintf(stderr, "asyncshim recover: %s: cannot replace it with %s: %s\n", trace, tmp, strerror(errno));
		return 2;
	}
	return 0;
}

static int recover_one(const char *lib, const char *trace, int quiet, int status)
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
	if (!valid_rings(h.rings)) {
		fprintf(stderr, "asyncshim recover: %s: bad \"rings\" in its header (not /dev/shm/asyncshim.PID.INODE)\n",
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
	return recover_into(lib, h.rings, trace, status);
}

int recover_trace(const char *lib, const char *trace, int quiet)
{
	return recover_one(lib, trace, quiet, -1);
}

int recover_exited(const char *lib, const char *trace, int status)
{
	return recover_one(lib, trace, 1, status);
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
