/* spans.c — an epoll loop that marks its own spans and requests with
 * include/asyncshim.h: 20 requests (parse with metadata > tokenize, query,
 * render; every fifth query blocks in usleep), then a span "batch" with a
 * cumulative span "item" over 10,000 iterations, a span with a name longer
 * than the shim keeps, and a worker thread with spans of its own meanwhile.
 * Prints the same lines with or without the shim.
 *
 *   spans stall    instead: one request "req-cpu" whose span "crunch" keeps
 *                  the loop busy on the CPU for 80 ms (a stall). */
#include <asyncshim.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static volatile uint64_t sink;

static void burn_us(unsigned us)
{
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	do {
		for (int i = 0; i < 100; i++)
			sink += (uint64_t)i * 7;
		clock_gettime(CLOCK_MONOTONIC, &b);
	} while ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000 < (long)us);
}

static void handle(int n)
{
	char id[32];
	snprintf(id, sizeof(id), "req-%d", n);
	asyncshim_request_begin(id);
	memset(id, 'x', sizeof(id) - 1);        /* the shim copied it */
	{
		ASYNCSHIM_SPAN("parse");
		asyncshim_span_set_int("bytes", 100 + n);
		asyncshim_span_set_str("method", n % 2 ? "POST" : "GET");
		{
			ASYNCSHIM_SPAN("tokenize");
			burn_us(50);
		}
	}
	asyncshim_span_begin("query");
	if (n % 5 == 0)
		usleep(15000);                  /* a blocking call inside query */
	else
		burn_us(100);
	asyncshim_span_end();
	{
		ASYNCSHIM_SPAN("render");
		burn_us(50);
	}
	asyncshim_request_end();
	printf("handled req-%d\n", n);
}

static void *worker(void *arg)
{
	(void)arg;
	for (int i = 0; i < 5; i++) {
		ASYNCSHIM_SPAN("bg");
		asyncshim_span_begin("bg-step");
		usleep(2000);
		asyncshim_span_end();
	}
	return NULL;
}

static int stall(void)
{
	int ep = epoll_create1(0);
	struct epoll_event ev;
	epoll_wait(ep, &ev, 1, 1);
	asyncshim_request_begin("req-cpu");
	asyncshim_span_begin("crunch");
	burn_us(80000);
	asyncshim_span_end();
	asyncshim_request_end();
	epoll_wait(ep, &ev, 1, 1);
	printf("stalled\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "stall"))
		return stall();
	pthread_t th;
	pthread_create(&th, NULL, worker, NULL);
	int ep = epoll_create1(0);
	int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec its = { { 0, 1000000L }, { 0, 1000000L } };
	timerfd_settime(tfd, 0, &its, NULL);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = tfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	for (int n = 0; n < 20; n++) {
		uint64_t x;
		if (epoll_wait(ep, &ev, 1, -1) == 1 && read(tfd, &x, sizeof(x)) < 0)
			return 1;
		handle(n);
	}
	epoll_wait(ep, &ev, 1, -1);
	asyncshim_span_begin("batch");
	uint64_t sum = 0;
	for (int i = 0; i < 10000; i++) {
		ASYNCSHIM_SPAN_CUMULATIVE("item");
		/* a body of ~100 ns: an empty one is shorter than the time
		 * between the two unserialized TSC reads, so its minimum can read 0 */
		for (int j = 0; j < 64; j++)
			sum += (uint64_t)(i + j) * (uint64_t)(i + j) % 7;
	}
	asyncshim_span_end();
	{
		ASYNCSHIM_SPAN("a-span-name-that-is-much-longer-than-the-sixty-three-bytes-the-shim-keeps-of-it");
		burn_us(10);
	}
	epoll_wait(ep, &ev, 1, -1);
	pthread_join(th, NULL);
	printf("batch sum %llu\n", (unsigned long long)sum);
	return 0;
}
