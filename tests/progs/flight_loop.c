/* flight_loop.c ITERATIONS WHAT [AFTER_MS] — a busy epoll loop (zero-timeout
 * waits: short iterations, about 8 bytes of trace each) that, after
 * ITERATIONS, makes one late finding — WHAT = block: a 200 ms usleep; stall: 200 ms of
 * CPU in one iteration; none — then loops AFTER_MS more (default 300) and
 * exits.  Prints its peak RSS (VmHWM, kB) last, for the memory bound of
 * flight mode (tests/test_flight.py).  Prints "ready" first; SIGUSR2 is left
 * alone (flight_signal). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void spin_count(int ep, long n)
{
	struct epoll_event ev;
	for (long i = 0; i < n; i++)
		epoll_wait(ep, &ev, 1, 0);
}

static void spin_loop(int ep, uint64_t ms)
{
	struct epoll_event ev;
	uint64_t end = now_ms() + ms;
	while (now_ms() < end)
		epoll_wait(ep, &ev, 1, 0);
}

static long peak_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmHWM:", 6))
			kb = atol(line + 6);
	if (f)
		fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	long before = atol(argv[1]);
	uint64_t after = argc > 3 ? (uint64_t)atol(argv[3]) : 300;
	int ep = epoll_create1(0);
	printf("ready\n");
	fflush(stdout);
	spin_count(ep, before);
	if (!strcmp(argv[2], "block")) {
		usleep(200000);
	} else if (!strcmp(argv[2], "stall")) {
		volatile uint64_t x = 0;
		uint64_t end = now_ms() + 200;
		while (now_ms() < end)
			x++;
	}
	spin_loop(ep, after);
	printf("peak_kb %ld\n", peak_kb());
	return 0;
}
