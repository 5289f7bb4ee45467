/* cumulative_cost.c — what 200,000 cumulative spans cost, measured by the
 * program itself: 40 rounds of 5,000 runs of a small body, each round once
 * bare and once with each run in ASYNCSHIM_SPAN_CUMULATIVE (under a span of
 * its own, so its aggregate is written when the round ends), between waits
 * of an epoll loop.  The fastest round of each kind is the one the machine
 * disturbed least: the cost printed is (fastest spanned - fastest bare)
 * per run, times the runs.  Built with -O2 like a real program. */
#pragma GCC optimize("O2")
#include <asyncshim.h>

#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <time.h>

#define ROUNDS 40
#define RUNS 5000

static volatile uint64_t sink;

__attribute__((noinline)) static void body(int i)
{
	for (int j = 0; j < 8; j++)
		sink += (uint64_t)(i + j) * 3;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t bare_round(void)
{
	uint64_t t0 = now_ns();
	for (int i = 0; i < RUNS; i++)
		body(i);
	return now_ns() - t0;
}

static uint64_t spanned_round(void)
{
	asyncshim_span_begin("round");
	uint64_t t0 = now_ns();
	for (int i = 0; i < RUNS; i++) {
		ASYNCSHIM_SPAN_CUMULATIVE("item");
		body(i);
	}
	uint64_t d = now_ns() - t0;
	asyncshim_span_end();
	return d;
}

int main(void)
{
	int ep = epoll_create1(0);
	struct epoll_event ev;
	uint64_t bare = UINT64_MAX, spanned = UINT64_MAX;
	for (int r = 0; r < ROUNDS; r++) {
		epoll_wait(ep, &ev, 1, 0);
		uint64_t b = bare_round(), s = spanned_round();
		bare = b < bare ? b : bare;
		spanned = s < spanned ? s : spanned;
	}
	epoll_wait(ep, &ev, 1, 0);
	double per_run = spanned > bare ? (double)(spanned - bare) / RUNS : 0;
	printf("runs %d per_run_ns %.2f measured_ns %.0f\n", ROUNDS * RUNS, per_run, per_run * ROUNDS * RUNS);
	return 0;
}
