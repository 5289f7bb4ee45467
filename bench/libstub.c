/* libstub.c — read, write and epoll_wait that answer fds >= 900 without a
 * syscall (EAGAIN, n, 0), preloaded after the shim by bench/calls.c's stub
 * rows: the shim's hooks then wrap a function that costs ~1 ns, so what
 * the hook adds can be measured without the kernel's noise.  Every other fd
 * goes to libc, so the shim's own collector still writes its trace. */
#include <dlfcn.h>
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#define STUB_FD 900

static ssize_t (*libc_read)(int, void *, size_t);
static ssize_t (*libc_write)(int, const void *, size_t);
static int (*libc_epoll_wait)(int, struct epoll_event *, int, int);

ssize_t read(int fd, void *buf, size_t n)
{
	if (fd >= STUB_FD) {
		errno = EAGAIN;
		return -1;
	}
	if (!libc_read)
		libc_read = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
	return libc_read(fd, buf, n);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	if (fd >= STUB_FD)
		return (ssize_t)n;
	if (!libc_write)
		libc_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
	return libc_write(fd, buf, n);
}

int epoll_wait(int fd, struct epoll_event *ev, int n, int timeout)
{
	if (fd >= STUB_FD)
		return 0;
	if (!libc_epoll_wait)
		libc_epoll_wait = (int (*)(int, struct epoll_event *, int, int))dlsym(RTLD_NEXT, "epoll_wait");
	return libc_epoll_wait(fd, ev, n, timeout);
}
