/* stack_repeat.c — an epoll loop on a 5 ms timer that blocks 12 ms from one
 * call site on ticks 1..5 and from another on ticks 6..8: eight blocking
 * calls, two distinct stacks. */
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

__attribute__((noinline)) static void nap_here(void)
{
	usleep(12 * 1000);
	__asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void nap_there(void)
{
	usleep(12 * 1000);
	__asm__ volatile("" ::: "memory");
}

int main(void)
{
	int ep = epoll_create1(0), tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec its = { { 0, 5 * 1000000L }, { 0, 5 * 1000000L } };
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = tfd };
	timerfd_settime(tfd, 0, &its, NULL);
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	for (int tick = 1; tick <= 9;) {
		uint64_t n;
		if (epoll_wait(ep, &ev, 1, 1000) != 1 || read(tfd, &n, sizeof(n)) != sizeof(n))
			continue;
		if (tick <= 5)
			nap_here();
		else if (tick <= 8)
			nap_there();
		tick++;
	}
	return 0;
}
