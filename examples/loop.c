/* loop.c — a small epoll event loop with the classic mistakes in it.
 *
 * The loop wakes on a 20 ms timerfd for TICKS ticks.  On tick 5 it sleeps
 * 150 ms (a blocking call), on tick 10 it reads a blocking pipe that a
 * helper thread fills ~120 ms later (a blocking call on a pipe), on tick 15
 * it burns 80 ms of CPU (a stall: no call to blame).  A worker thread
 * nanosleeps 200 ms, which is fine: it is not a loop.  Prints how many times
 * the loop waited, so tests can check the iteration count exactly. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define TICKS 30

static int pipefd[2];

static void *worker(void *arg)
{
	(void)arg;
	struct timespec ts = { 0, 200 * 1000000L };
	nanosleep(&ts, NULL);
	return NULL;
}

static void *helper(void *arg)
{
	(void)arg;
	usleep(120 * 1000);
	if (write(pipefd[1], "x", 1) != 1)
		abort();
	return NULL;
}

__attribute__((noinline)) static void slow_sleep(void)
{
	usleep(150 * 1000);
	__asm__ volatile("" ::: "memory");   /* no tail call: keep this frame at -O2 */
}

__attribute__((noinline)) static void wait_for_helper(void)
{
	char c;
	if (read(pipefd[0], &c, 1) != 1)
		abort();
}

__attribute__((noinline)) static double burn_cpu(void)
{
	struct timespec a, b;
	volatile double x = 1.0;
	clock_gettime(CLOCK_MONOTONIC, &a);
	do {
		for (int i = 0; i < 10000; i++)
			x = x * 1.0000001 + 0.0000001;
		clock_gettime(CLOCK_MONOTONIC, &b);
	} while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < 80 * 1000000L);
	return x;
}

__attribute__((noinline)) static void handle_tick(int tick)
{
	pthread_t th;
	if (tick == 5)
		slow_sleep();
	if (tick == 10) {
		pthread_create(&th, NULL, helper, NULL);
		wait_for_helper();
		pthread_join(th, NULL);
	}
	if (tick == 15)
		burn_cpu();
}

__attribute__((noinline)) static int run_loop(int ep, int tfd)
{
	int waits = 0, tick = 0;
	while (tick < TICKS) {
		struct epoll_event ev;
		waits++;
		int n = epoll_wait(ep, &ev, 1, 1000);
		if (n <= 0)
			continue;
		uint64_t expirations;
		if (read(tfd, &expirations, sizeof(expirations)) != sizeof(expirations))
			continue;
		handle_tick(++tick);
	}
	return waits;
}

int main(void)
{
	pthread_t w;
	if (pipe(pipefd) != 0)
		return 1;
	pthread_create(&w, NULL, worker, NULL);
	int ep = epoll_create1(0);
	int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec its = { { 0, 20 * 1000000L }, { 0, 20 * 1000000L } };
	timerfd_settime(tfd, 0, &its, NULL);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = tfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	int waits = run_loop(ep, tfd);
	pthread_join(w, NULL);
	printf("waits=%d\n", waits);
	return 0;
}
