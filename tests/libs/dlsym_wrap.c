/* libdlsym_wrap.so — preloaded after the shim, it interposes dlsym the way
 * tracing and sandboxing libraries do, and calls the very function it is
 * asked for (harmlessly: bad fds, zero sleeps) before looking it up.  The
 * shim resolves real functions lazily through dlsym, so each of its hooks
 * is then re-entered from inside the dlsym that is resolving it.  Prints how
 * often that happened at exit when DLSYM_WRAP_REPORT is set. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

static __thread int depth;
static int reentered;

static void *real_dlsym(void *handle, const char *name)
{
	static void *(*real)(void *, const char *);
	if (!real)
		real = (void *(*)(void *, const char *))dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
	return real(handle, name);
}

static void call_it(const char *name)
{
	char c;
	struct timespec ts = { 0, 1000 };
	struct epoll_event ev;
	if (!strcmp(name, "write"))
		(void)!write(-1, "x", 1);
	else if (!strcmp(name, "read"))
		(void)!read(-1, &c, 1);
	else if (!strcmp(name, "nanosleep"))
		nanosleep(&ts, NULL);
	else if (!strcmp(name, "usleep"))
		usleep(1);
	else if (!strcmp(name, "epoll_wait"))
		epoll_wait(-1, &ev, 1, 0);
	else if (!strcmp(name, "open"))
		close(open("/nonexistent/x", O_RDONLY));
	else
		return;
	reentered++;
}

void *dlsym(void *handle, const char *name)
{
	if (!depth) {
		depth = 1;
		call_it(name);
		depth = 0;
	}
	return real_dlsym(handle, name);
}

__attribute__((destructor)) static void report(void)
{
	if (getenv("DLSYM_WRAP_REPORT"))
		fprintf(stderr, "dlsym_wrap reentered=%d\n", reentered);
}
