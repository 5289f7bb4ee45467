/* nested_loop [OUTER] [INNER] [MS] — an epoll loop whose every iteration
 * runs a second epoll set (as Node's execSync does): INNER waits of MS ms
 * on another epoll fd, then back to the outer loop. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

__attribute__((noinline)) void inner_loop(int inner, int ms)
{
	int ep2 = epoll_create1(0), efd = eventfd(0, 0);
	struct epoll_event ev = { .events = EPOLLIN };
	epoll_ctl(ep2, EPOLL_CTL_ADD, efd, &ev);
	for (int i = 0; i < inner; i++)
		if (epoll_wait(ep2, &ev, 1, ms) != 0)      /* nothing comes: a timeout */
			exit(3);
	close(efd);
	close(ep2);
}

int main(int argc, char **argv)
{
	int outer = argc > 1 ? atoi(argv[1]) : 2, inner = argc > 2 ? atoi(argv[2]) : 3;
	int ms = argc > 3 ? atoi(argv[3]) : 100;
	int ep = epoll_create1(0), efd = eventfd(1, 0);
	struct epoll_event ev = { .events = EPOLLIN };
	epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
	for (int i = 0; i < outer; i++) {
		if (epoll_wait(ep, &ev, 1, -1) != 1)      /* always ready: an iteration */
			return 2;
		inner_loop(inner, ms);
	}
	epoll_wait(ep, &ev, 1, -1);
	printf("OK\n");
	return 0;
}
