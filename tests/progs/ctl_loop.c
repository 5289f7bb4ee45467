/* ctl_loop.c — an epoll loop on a 5 ms timerfd that blocks in a 15 ms
 * usleep every 10th iteration, and runs until killed.  After printing
 * "ready" it closes every fd it did not open itself (the shim's trace file
 * too), as daemons do: asyncshim ctl must still reach it. */
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

int main(void)
{
	int ep = epoll_create1(0);
	int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec its = { { 0, 5000000L }, { 0, 5000000L } };
	timerfd_settime(tfd, 0, &its, NULL);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = tfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	printf("ready\n");
	fflush(stdout);
	for (int fd = 0; fd < 1024; fd++)
		if (fd != ep && fd != tfd)
			close(fd);
	for (unsigned n = 1;; n++) {
		uint64_t x;
		if (epoll_wait(ep, &ev, 1, -1) == 1 && read(tfd, &x, sizeof(x)) < 0)
			return 1;
		if (n % 10 == 0)
			usleep(15000);
	}
}
