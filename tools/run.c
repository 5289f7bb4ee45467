/* run.c — `asyncshim run [--block-ms N] [-o PREFIX] -- CMD ARGS...`
 * Sets LD_PRELOAD and ASYNCSHIM_OPTIONS, runs CMD, returns its exit status
 * and names the trace files it (and its children) wrote. */
#include "cli.h"
#include "trace.h"

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int find_library(char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return -1;
	self[n] = '\0';
	const char *dir = dirname(self);
	/* installed, in build/, and build/asan/'s tools using build/'s library */
	const char *candidates[] = { "%s/libasyncshim.so", "%s/../lib/libasyncshim.so", "%s/../libasyncshim.so" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(out, len, candidates[i], dir);
		if (access(out, R_OK) == 0)
			return 0;
	}
	return -1;
}

static int valid_uint(const char *s)
{
	if (!*s || strlen(s) > 9)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

/* The program was killed (SIGKILL), or exited (STATUS >= 0) without its
 * final flush (a raw exit_group, as Go's runtime does): finish its traces
 * from its rings (asyncshim recover), PREFIX.<pid>.msgpack and those of
 * exec'd images.  Traces that have their end record have no rings left. */
static void recover_unfinished(const char *lib, const char *prefix, pid_t pid, int status)
{
	char path[PATH_MAX + 64];
	for (int n = 0; n < 100; n++) {
		if (n == 0)
			snprintf(path, sizeof(path), "%s.%d.msgpack", prefix, (int)pid);
		else
			snprintf(path, sizeof(path), "%s.%d.%d.msgpack", prefix, (int)pid, n);
		if (access(path, F_OK) != 0)
			break;
		if (status >= 0)
			recover_exited(lib, path, status);
		else
			recover_trace(lib, path, 1);
	}
}

/* Trace files are PREFIX.<pid>[.<n>].msgpack: those modified since start,
 * in *PATHS (malloc'd), how many returned. */
static size_t find_traces(const char *prefix, time_t since, char ***paths)
{
	char buf[PATH_MAX];
	snprintf(buf, sizeof(buf), "%s", prefix);
	char *slash = strrchr(buf, '/');
	const char *dir = ".", *base = buf;
	if (slash) {
		*slash = '\0';
		dir = buf[0] ? buf : "/";
		base = slash + 1;
	}
	*paths = NULL;
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	size_t blen = strlen(base), n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len <= blen + 9 || strncmp(e->d_name, base, blen) || e->d_name[blen] != '.' ||
		    strcmp(e->d_name + len - 8, ".msgpack"))
			continue;
		char path[PATH_MAX * 2];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		struct stat st;
		if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_mtime < since)
			continue;
		char **p = trace_grow(*paths, &cap, n, sizeof(*p));
		char *copy = p ? strdup(path) : NULL;
		if (p)
			*paths = p;
		if (!copy)
			break;
		(*paths)[n++] = copy;
	}
	closedir(d);
	return n;
}

/* One trace's line of the table run ends with. */
struct summary {
	const char *path;
	char program[17];
	size_t loops;
	uint64_t iterations, blocks, stalls;
	int ok;                 /* it could be read */
};

static void summarize(const char *path, struct summary *s)
{
	struct trace tr;
	char err[256];
	memset(s, 0, sizeof(*s));
	s->path = path;
	s->ok = trace_load_keep(path, &tr, 0, err, sizeof(err)) == 0;
	if (!s->ok) {
		snprintf(s->program, sizeof(s->program), "(unreadable)");
		trace_free(&tr);
		return;
	}
	/* the name it was run by: redis-server, not redis-check-rdb */
	const char *name = tr.argv0[0] ? tr.argv0 : tr.exe;
	name = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
	size_t len = strlen(name);
	if (len < sizeof(s->program))
		memcpy(s->program, name, len + 1);
	else
		snprintf(s->program, sizeof(s->program), "%.13s...", name);
	for (size_t i = 0; i < tr.nthreads; i++) {
		s->loops += tr.threads[i].loop;
		s->iterations += tr.threads[i].iterations;
	}
	s->blocks = tr.blocks_total;
	s->stalls = tr.stalls_total;
	trace_free(&tr);
}

static int worth_a_line(const struct summary *s)
{
	return !s->ok || s->loops || s->blocks || s->stalls;
}

/* A short table on stderr: each trace with loop threads or findings (and
 * any that cannot be read), the rest counted in one line. */
static void print_traces(const char *prefix, time_t since)
{
	char **paths;
	size_t n = find_traces(prefix, since, &paths);
	struct summary *s = n ? calloc(n, sizeof(*s)) : NULL;
	if (!s) {
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, "asyncshim: trace %s\n", paths[i]);
		goto out;
	}
	size_t listed = 0;
	for (size_t i = 0; i < n; i++) {
		summarize(paths[i], &s[i]);
		listed += worth_a_line(&s[i]);
	}
	fprintf(stderr, "asyncshim: %zu trace%s written\n", n, n == 1 ? "" : "s");
	if (listed)
		fprintf(stderr, "  %-16s %12s %10s %14s %6s  %s\n", "program", "loop threads", "iterations",
			"blocking calls", "stalls", "trace");
	for (size_t i = 0; i < n; i++)
		if (worth_a_line(&s[i]))
			fprintf(stderr, "  %-16s %12zu %10" PRIu64 " %14" PRIu64 " %6" PRIu64 "  %s\n", s[i].program,
				s[i].loops, s[i].iterations, s[i].blocks, s[i].stalls, s[i].path);
	if (n > listed)
		fprintf(stderr, "  and %zu more of processes without a loop thread or findings\n", n - listed);
	free(s);
out:
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
}

/* CMD as execvp would find it: a name with a slash as is, else along PATH. */
static int find_command(const char *cmd, char *out, size_t len)
{
	if (strchr(cmd, '/')) {
		snprintf(out, len, "%s", cmd);
		return access(out, X_OK);
	}
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/bin:/usr/bin";
	while (*path) {
		size_t n = strcspn(path, ":");
		snprintf(out, len, "%.*s/%s", (int)(n ? n : 1), n ? path : ".", cmd);
		struct stat st;
		if (access(out, X_OK) == 0 && stat(out, &st) == 0 && S_ISREG(st.st_mode))
			return 0;
		path += n + (path[n] == ':');
	}
	return -1;
}

/* 1 when PATH is an ELF executable without a program interpreter: the
 * dynamic loader never runs, so LD_PRELOAD (the shim) never loads. */
static int is_static_elf(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	Elf64_Ehdr eh;
	int is_static = 0;
	if (pread(fd, &eh, sizeof(eh), 0) == (ssize_t)sizeof(eh) && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
	    eh.e_ident[EI_CLASS] == ELFCLASS64 && (eh.e_type == ET_EXEC || eh.e_type == ET_DYN) &&
	    eh.e_phentsize == sizeof(Elf64_Phdr) && eh.e_phnum > 0 && eh.e_phnum < 4096) {
		is_static = 1;
		for (unsigned i = 0; i < eh.e_phnum && is_static; i++) {
			Elf64_Phdr ph;
			if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) != (ssize_t)sizeof(ph))
				is_static = 0;      /* unreadable: let the loader decide */
			else if (ph.p_type == PT_INTERP)
				is_static = 0;
		}
	}
	close(fd);
	return is_static;
}

static void warn_if_static(const char *cmd)
{
	char path[PATH_MAX];
	if (find_command(cmd, path, sizeof(path)) != 0 || !is_static_elf(path))
		return;
	fprintf(stderr,
		"asyncshim run: %s is statically linked: LD_PRELOAD cannot reach it, so it writes no trace.\n"
		"asyncshim run: link it dynamically (gcc without -static; Go: CGO_ENABLED=1, and not "
		"-ldflags=-extldflags=-static),\n"
		"asyncshim run: or profile it from outside the process (perf trace, perf sched, offcputime from bcc).\n",
		path);
}

static pid_t child;

static void forward(int sig)
{
	if (child > 0)
		kill(child, sig);
}

int cmd_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "block-ms", required_argument, NULL, 'b' },
		{ "out", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	const char *usage = "usage: asyncshim run [--block-ms N] [-o PREFIX] -- CMD ARGS...";
	const char *block = NULL, *out = "asyncshim";
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+b:o:", longopts, NULL)) != -1) {
		if (c == 'b' && valid_uint(optarg))
			block = optarg;
		else if (c == 'o' && *optarg && !strchr(optarg, ':'))
			out = optarg;
		else
			return usage_error("run", c == 'b' ? "--block-ms needs a whole number of ms" : usage);
	}
	if (optind >= argc)
		return usage_error("run", usage);

	char lib[PATH_MAX], opts[4096], preload[PATH_MAX * 2];
	if (find_library(lib, sizeof(lib)) != 0)
		return usage_error("run", "cannot find libasyncshim.so next to this program");
	const char *old = getenv("LD_PRELOAD");
	snprintf(preload, sizeof(preload), "%s%s%s", lib, old && *old ? ":" : "", old ? old : "");
	const char *oldopts = getenv("ASYNCSHIM_OPTIONS");
	snprintf(opts, sizeof(opts), "%s%sout=%s%s%s", oldopts ? oldopts : "", oldopts && *oldopts ? ":" : "", out,
		 block ? ":block_ms=" : "", block ? block : "");

	warn_if_static(argv[optind]);
	time_t start = time(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return usage_error("run", strerror(errno));
	if (pid == 0) {
		setenv("LD_PRELOAD", preload, 1);
		setenv("ASYNCSHIM_OPTIONS", opts, 1);
		execvp(argv[optind], argv + optind);
		fprintf(stderr, "asyncshim run: %s: %s\n", argv[optind], strerror(errno));
		_exit(127);
	}
	/* ^C reaches the child from the terminal; SIGTERM/SIGHUP sent to us are
	 * passed on; we wait for it to finish writing its trace */
	child = pid;
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, forward);
	signal(SIGHUP, forward);
	/* not reaped until its rings are read: while it is a zombie, the
	 * stale-ring sweep of any other shimmed process (preload/shm.c) takes
	 * it for alive and leaves its files alone */
	siginfo_t info;
	memset(&info, 0, sizeof(info));
	while (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT) < 0 && errno == EINTR)
		;
	if (info.si_code == CLD_KILLED && info.si_status == SIGKILL)
		recover_unfinished(lib, out, pid, -1);
	else if (info.si_code == CLD_EXITED)
		recover_unfinished(lib, out, pid, info.si_status);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	print_traces(out, start);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}
