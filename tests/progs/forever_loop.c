/* forever_loop.c — an epoll loop on a 10 ms timerfd that runs until killed. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--show-sigint")) {
		struct sigaction sa;
		sigaction(SIGINT, NULL, &sa);
		printf("sigint=%s\n", sa.sa_handler == SIG_DFL ? "default" : "other");
		return 0;
	}
	int ep = epoll_create1(0);
	int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec its = { { 0, 10 * 1000000L }, { 0, 10 * 1000000L } };
	timerfd_settime(tfd, 0, &its, NULL);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = tfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		uint64_t n;
		if (epoll_wait(ep, &ev, 1, -1) == 1 && read(tfd, &n, sizeof(n)) < 0)
			return 1;
	}
}
