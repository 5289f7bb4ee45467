/* idle_loop.c — an epoll loop that waits on stdin forever and handles one
 * line at a time (the test writes lines to wake it).  Prints "ready". */
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

int main(void)
{
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = 0 };
	epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		char buf[256];
		if (epoll_wait(ep, &ev, 1, -1) != 1)
			continue;
		if (read(0, buf, sizeof(buf)) <= 0)
			return 0;
	}
}
