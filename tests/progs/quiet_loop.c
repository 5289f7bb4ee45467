/* quiet_loop.c — an epoll loop that makes none of the calls
 * tests/libs/spy_io.c watches: iterations, one blocking usleep and one
 * stall, so the shim registers it, captures stacks, samples and writes a
 * trace. */
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

static void spin_ms(long ms)
{
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	do
		clock_gettime(CLOCK_MONOTONIC, &b);
	while ((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 < ms);
}

int main(void)
{
	int ep = epoll_create1(0);
	struct epoll_event ev;
	for (int i = 0; i < 20; i++) {
		epoll_wait(ep, &ev, 1, 5);
		if (i == 5)
			usleep(30000);
		if (i == 10)
			spin_ms(40);
	}
	return 0;
}
