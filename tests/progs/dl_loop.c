/* dl_loop.c LIB — an epoll loop on a 10 ms timer that, on tick 3, dlopen()s
 * LIB, calls its dlblock_nap() (which blocks ~40 ms) and dlclose()s it at
 * once; it runs 6 ticks.  Prints "called" when the library ran. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

__attribute__((noinline)) static int call_plugin(const char *path)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return -1;
	}
	int (*nap)(void) = (int (*)(void))dlsym(h, "dlblock_nap");
	int r = nap ? nap() : -1;
	dlclose(h);
	return r;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	int ep = epoll_create1(0), tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec its = { { 0, 10 * 1000000L }, { 0, 10 * 1000000L } };
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = tfd };
	timerfd_settime(tfd, 0, &its, NULL);
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	for (int tick = 1; tick <= 6;) {
		uint64_t n;
		if (epoll_wait(ep, &ev, 1, 1000) != 1 || read(tfd, &n, sizeof(n)) != sizeof(n))
			continue;
		if (++tick == 3) {
			if (call_plugin(argv[1]) != 0)
				return 1;
			printf("called\n");
		}
	}
	return 0;
}
