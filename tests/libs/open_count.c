/* open_count.c — preloaded into build/asyncshim by tests/test_read_once.py:
 * counts the opens (open, openat, fopen and their 64/_2 forms) of each path
 * ending in ".msgpack" and, at exit, appends "COUNT PATH" lines to the file
 * named by $OPEN_COUNT_FILE.  A command that reads each trace once opens it
 * once.  With $OPEN_REPLACE_WITH=FILE, FILE is renamed over the first trace
 * opened right after that open: a pass that reopened the trace would read
 * FILE instead. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PATHS 64

static struct {
	char path[256];
	int count;
} seen[MAX_PATHS];
static int nseen;

static int is_trace(const char *path)
{
	size_t len = path ? strlen(path) : 0;
	return len >= 8 && !strcmp(path + len - 8, ".msgpack");
}

static void replace_once(const char *path)
{
	static int done;
	const char *with = getenv("OPEN_REPLACE_WITH");
	if (done || !with)
		return;
	done = 1;
	rename(with, path);
}

static void note(const char *path)
{
	if (!is_trace(path) || strlen(path) >= sizeof(seen[0].path))
		return;
	for (int i = 0; i < nseen; i++)
		if (!strcmp(seen[i].path, path)) {
			seen[i].count++;
			return;
		}
	if (nseen < MAX_PATHS) {
		strcpy(seen[nseen].path, path);
		seen[nseen++].count = 1;
	}
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

#define OPEN_LIKE(name)                                                       \
	int name(const char *path, int flags, ...)                            \
	{                                                                     \
		static int (*real)(const char *, int, ...);                   \
		va_list ap;                                                   \
		va_start(ap, flags);                                          \
		mode_t mode = mode_arg(flags, ap);                            \
		va_end(ap);                                                   \
		if (!real)                                                    \
			real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, #name); \
		note(path);                                                   \
		int fd = real(path, flags, mode);                             \
		if (fd >= 0 && is_trace(path))                                \
			replace_once(path);                                   \
		return fd;                                                    \
	}

#define OPENAT_LIKE(name)                                                     \
	int name(int dir, const char *path, int flags, ...)                   \
	{                                                                     \
		static int (*real)(int, const char *, int, ...);              \
		va_list ap;                                                   \
		va_start(ap, flags);                                          \
		mode_t mode = mode_arg(flags, ap);                            \
		va_end(ap);                                                   \
		if (!real)                                                    \
			real = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, #name); \
		note(path);                                                   \
		int fd = real(dir, path, flags, mode);                        \
		if (fd >= 0 && is_trace(path))                                \
			replace_once(path);                                   \
		return fd;                                                    \
	}

#define FOPEN_LIKE(name)                                                      \
	FILE *name(const char *path, const char *how)                         \
	{                                                                     \
		static FILE *(*real)(const char *, const char *);             \
		if (!real)                                                    \
			real = (FILE * (*)(const char *, const char *))dlsym(RTLD_NEXT, #name); \
		note(path);                                                   \
		FILE *f = real(path, how);                                    \
		if (f && is_trace(path))                                      \
			replace_once(path);                                   \
		return f;                                                     \
	}

OPEN_LIKE(open)
OPEN_LIKE(open64)
OPEN_LIKE(__open_2)
OPEN_LIKE(__open64_2)
OPENAT_LIKE(openat)
OPENAT_LIKE(openat64)
OPENAT_LIKE(__openat_2)
OPENAT_LIKE(__openat64_2)
FOPEN_LIKE(fopen)
FOPEN_LIKE(fopen64)

__attribute__((destructor)) static void write_counts(void)
{
	const char *out = getenv("OPEN_COUNT_FILE");
	if (!out || !nseen)
		return;
	static int (*real_open)(const char *, int, ...);
	real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
	int fd = real_open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	for (int i = 0; i < nseen; i++) {
		char line[300];
		int n = snprintf(line, sizeof(line), "%d %s\n", seen[i].count, seen[i].path);
		if (write(fd, line, (size_t)n) != n)
			break;
	}
	close(fd);
}
