/* libread_wrap.so — preloaded after the shim, it interposes read the way a
 * sandbox, a proxy or a fake-clock library interposes calls: the shim must
 * then call it instead of making read's syscall itself (preload/raw.c).
 * Counts the reads it saw; prints "read_wrap reads=N" at exit. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

static int reads;

ssize_t read(int fd, void *buf, size_t n)
{
	static ssize_t (*next)(int, void *, size_t);
	if (!next)
		next = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
	__atomic_fetch_add(&reads, 1, __ATOMIC_RELAXED);
	return next(fd, buf, n);
}

__attribute__((destructor)) static void report(void)
{
	fprintf(stderr, "read_wrap reads=%d\n", reads);
}
