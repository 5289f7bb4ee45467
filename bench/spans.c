/* spans.c — what spans cost, and what a hook costs while recording is
 * switched off with asyncshim ctl (bench/spans.py runs it).
 *
 *   spans BLOCKS [ctl]
 *
 * On a loop thread (it waited in epoll_wait once), in one process, blocks of
 * N operations are timed with the thread's CPU clock, ABBA against drift:
 *
 *   hook     write() to a stub fd (build/bench/libstub.so, preloaded after
 *            the shim, answers fds >= 900 without a syscall): "hooked" is
 *            the shim's write, "direct" the stub's own — the difference is
 *            what the hook adds;
 *   span     asyncshim_span_begin + asyncshim_span_end (include/asyncshim.h)
 *            against an empty loop;
 *   cumul    the same with a cumulative span;
 *
 * first with recording on; with `ctl` (the shim recording), again after the
 * process sent itself asyncshim ctl's disable command (sigqueue, as
 * `asyncshim ctl PID disable` does), and once enabled again.  Without the shim the span rows measure the header's
 * no-op (a load and a branch).  Prints
 *   ROW phase op diff_ns base_ns blocks                               */
#include <asyncshim.h>

#include "../preload/ctl_proto.h"

#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define N 2000
#define STUB_FD 900

typedef ssize_t (*write_fn)(int, const void *, size_t);

static write_fn hooked, direct;
static volatile uint64_t sink;

static uint64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t block(const char *op, int b)
{
	char c = 0;
	uint64_t t0 = cpu_ns();
	if (!strcmp(op, "hook")) {
		write_fn fn = b ? hooked : direct;
		for (int i = 0; i < N; i++)
			sink += (uint64_t)fn(STUB_FD, &c, 1);
	} else if (!strcmp(op, "span")) {
		for (int i = 0; i < N; i++) {
			if (b) {
				asyncshim_span_begin("bench");
				asyncshim_span_end();
			}
			sink += (uint64_t)i;
		}
	} else {
		for (int i = 0; i < N; i++) {
			if (b) {
				asyncshim_span_cumulative_begin("bench");
				asyncshim_span_cumulative_end();
			}
			sink += (uint64_t)i;
		}
	}
	return cpu_ns() - t0;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void row(const char *phase, const char *op, int blocks)
{
	double *d = malloc(sizeof(double) * (size_t)blocks), base = 0;
	for (int k = 0; k < blocks; k++) {
		int first = k & 1;      /* ABBA */
		uint64_t x = block(op, first), y = block(op, !first);
		uint64_t with = first ? x : y, without = first ? y : x;
		d[k] = ((double)with - (double)without) / N;
		base += (double)without / N;
		if (!strcmp(op, "span"))
			usleep(20000);  /* the collector keeps up: no record dropped */
	}
	qsort(d, (size_t)blocks, sizeof(double), cmp);
	printf("ROW %s %s %.1f %.1f %d\n", phase, op, d[blocks / 2], base / blocks, blocks);
	fflush(stdout);
	free(d);
}

/* What `asyncshim ctl PID disable|enable` sends; the collector applies it
 * within one drain period (20 ms). */
static void ctl_self(int cmd)
{
	union sigval v;
	v.sival_int = AS_CTL_MAGIC | cmd;
	sigqueue(getpid(), SIGRTMAX - AS_CTL_DEFAULT_SIGNAL_FROM_MAX, v);
	usleep(200000);
}

int main(int argc, char **argv)
{
	int blocks = argc > 1 ? atoi(argv[1]) : 200;
	void *stub = dlopen("libstub.so", RTLD_NOW | RTLD_NOLOAD);
	hooked = (write_fn)dlsym(RTLD_DEFAULT, "write");
	direct = stub ? (write_fn)dlsym(stub, "write") : hooked;
	int ep = epoll_create1(0);
	struct epoll_event ev;
	epoll_wait(ep, &ev, 1, 0);      /* a loop thread from here on */
	epoll_wait(ep, &ev, 1, 0);      /* and inside an iteration */
	int ctl = argc > 2 && !strcmp(argv[2], "ctl");
	const char *ops[] = { "hook", "span", "cumul" };
	/* every page of the ring once: a ring in use is warm, its first pass
	 * pays page faults instead (buffer_kb=8192: 262,144 records) */
	for (int k = 0; k < 60; k++) {
		block("span", 1);
		usleep(20000);
	}
	for (int i = 0; i < 3; i++)
		row("on", ops[i], blocks);
	if (!ctl)
		return 0;
	ctl_self(AS_CTL_DISABLE);
	for (int i = 0; i < 3; i++)
		row("disabled", ops[i], blocks);
	ctl_self(AS_CTL_ENABLE);
	for (int i = 0; i < 3; i++)
		row("enabled-again", ops[i], blocks);
	return 0;
}
