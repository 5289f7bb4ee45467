/* blocker.c — an epoll loop on a 10 ms timerfd for 20 ticks that blocks on
 * request, for the CI-gating tests (check, the in-process gate, diff).
 *
 *   --block-ms N   tick 3 calls usleep(N ms) in steady_block()
 *   --extra-ms N   tick 6 calls usleep(N ms) in extra_block(): a second,
 *                  distinct call site
 *   --exit N       end with exit(N) instead of returning 0 from main
 *   --return N     return N from main */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define TICKS 20

static unsigned block_ms, extra_ms;

__attribute__((noinline)) static void steady_block(void)
{
	usleep(block_ms * 1000);
}

__attribute__((noinline)) static void extra_block(void)
{
	usleep(extra_ms * 1000);
}

__attribute__((noinline)) static void on_tick(int tick)
{
	if (tick == 3 && block_ms)
		steady_block();
	if (tick == 6 && extra_ms)
		extra_block();
}

int main(int argc, char **argv)
{
	int exit_code = -1, return_code = 0;
	for (int i = 1; i + 1 < argc; i += 2) {
		unsigned v = (unsigned)atoi(argv[i + 1]);
		if (!strcmp(argv[i], "--block-ms"))
			block_ms = v;
		else if (!strcmp(argv[i], "--extra-ms"))
			extra_ms = v;
		else if (!strcmp(argv[i], "--exit"))
			exit_code = (int)v;
		else if (!strcmp(argv[i], "--return"))
			return_code = (int)v;
		else
			return 100;
	}
	int ep = epoll_create1(0);
	int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec its = { { 0, 10 * 1000000L }, { 0, 10 * 1000000L } };
	timerfd_settime(tfd, 0, &its, NULL);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = tfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	for (int tick = 0; tick < TICKS;) {
		uint64_t n;
		if (epoll_wait(ep, &ev, 1, 1000) == 1 && read(tfd, &n, sizeof(n)) == sizeof(n))
			on_tick(++tick);
	}
	printf("ticks=%d\n", TICKS);
	if (exit_code >= 0)
		exit(exit_code);
	return return_code;
}
