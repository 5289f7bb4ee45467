/* stacks.c — what stacks and stall sampling cost (run by bench/stacks.py).
 *
 *   unwind DEPTH N    the shim's own capture code (build/bench/libcapture.so:
 *                     preload/stack.c alone) from DEPTH nested frames, N
 *                     times, as for a blocking call and from a signal
 *                     handler (minus an empty handler); prints ns each.
 *   stall MS          one loop iteration does MS ms of fixed CPU work; prints
 *                     the thread CPU time it took and the watchdog's CPU time.
 *                     With sampling minus without, per sample: the cost a
 *                     stalled thread pays for one sample.
 *   healthy N         N loop iterations (an always-ready eventfd, a little
 *                     work each); prints ns per iteration.
 *   ticks S [US]      a loop on a timer (1 ms, or US us) for S seconds; prints
 *                     the CPU time of the process and of the watchdog, and
 *                     how many times the watchdog woke.
 *   race S            a stall of S seconds that waits 10 us (nanosleep, then
 *                     ppoll, alternately) between 100 us bursts of work;
 *                     prints how many of each saw EINTR. */
#include <dirent.h>
#include <poll.h>
#include <dlfcn.h>
#include <signal.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static int ep;

static uint64_t ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void end_iteration(void)
{
	struct epoll_event ev;
	epoll_wait(ep, &ev, 1, 0);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* CPU time of the shim's watchdog thread, from schedstat (ns); 0 if none. */
/* /proc/self/task/TID/NAME of the shim's watchdog thread, or NULL */
static FILE *watchdog_file(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	FILE *found = NULL;
	while (d && !found && (e = readdir(d))) {
		char path[300], buf[64] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		int wd = fgets(buf, sizeof(buf), f) && !strncmp(buf, "asyncshim-wd", 12);
		fclose(f);
		snprintf(path, sizeof(path), "/proc/self/task/%s/%s", e->d_name, name);
		if (wd)
			found = fopen(path, "r");
	}
	if (d)
		closedir(d);
	return found;
}

static uint64_t watchdog_cpu_ns(void)
{
	uint64_t v = 0;
	FILE *f = watchdog_file("schedstat");
	if (f) {
		if (fscanf(f, "%lu", (unsigned long *)&v) != 1)
			v = 0;
		fclose(f);
	}
	return v;
}

/* each voluntary context switch is one sleep the watchdog woke from */
static long watchdog_wakeups(void)
{
	char line[256];
	long v = 0;
	FILE *f = watchdog_file("status");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "voluntary_ctxt_switches:", 24))
			v = atol(line + 24);
	if (f)
		fclose(f);
	return v;
}

/* A fixed amount of work: the same instructions under every configuration. */
__attribute__((noinline)) static double work(long units)
{
	volatile double x = 1.0;
	for (long i = 0; i < units; i++)
		for (int j = 0; j < 1000; j++)
			x = x * 1.0000001 + 0.0000001;
	return x;
}

static long units_per_ms(void)
{
	uint64_t t0 = ns(CLOCK_THREAD_CPUTIME_ID);
	work(2000);
	return (long)(2000.0 * 1e6 / (double)(ns(CLOCK_THREAD_CPUTIME_ID) - t0));
}

/* The work in 1-unit chunks, timing each: a chunk that took 5 us to 1 ms
 * longer than usual was interrupted (a sample's signal, or the kernel). */
static int stall(int ms)
{
	long units = units_per_ms() * ms, ngaps = 0;
	static uint64_t gaps[100000];
	end_iteration();
	end_iteration();
	uint64_t wd0 = watchdog_cpu_ns(), c0 = ns(CLOCK_THREAD_CPUTIME_ID);
	uint64_t chunk = UINT64_MAX, prev = ns(CLOCK_MONOTONIC);
	for (long i = 0; i < units; i++) {
		work(1);
		uint64_t now = ns(CLOCK_MONOTONIC), d = now - prev;
		prev = now;
		chunk = d < chunk ? d : chunk;
		if (d > chunk + 5000 && d < chunk + 1000000 && ngaps < 100000)
			gaps[ngaps++] = d - chunk;
	}
	uint64_t cpu = ns(CLOCK_THREAD_CPUTIME_ID) - c0;
	end_iteration();
	qsort(gaps, (size_t)ngaps, sizeof(*gaps), cmp_u64);
	printf("stall_cpu_ns %lu\nwatchdog_cpu_ns %lu\ngaps %ld\ngap_median_ns %lu\n", (unsigned long)cpu,
	       (unsigned long)(watchdog_cpu_ns() - wd0), ngaps, (unsigned long)(ngaps ? gaps[ngaps / 2] : 0));
	return 0;
}

static int healthy(long n)
{
	int efd = eventfd(1, 0);          /* never read: always ready */
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = efd };
	epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
	uint64_t t0 = ns(CLOCK_MONOTONIC);
	for (long i = 0; i < n; i++) {
		epoll_wait(ep, &ev, 1, -1);
		work(1);                  /* about a microsecond of handling */
	}
	printf("ns_per_iteration %.1f\n", (double)(ns(CLOCK_MONOTONIC) - t0) / (double)n);
	return 0;
}

static int ticks(int seconds, long period_us)
{
	int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	struct timespec period = { period_us / 1000000, period_us % 1000000 * 1000 };
	struct itimerspec its = { period, period };
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = tfd };
	timerfd_settime(tfd, 0, &its, NULL);
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	struct rusage r0, r1;
	getrusage(RUSAGE_SELF, &r0);
	uint64_t wd0 = watchdog_cpu_ns(), end = ns(CLOCK_MONOTONIC) + (uint64_t)seconds * 1000000000u;
	long n = 0, wake0 = watchdog_wakeups();
	while (ns(CLOCK_MONOTONIC) < end) {
		uint64_t x;
		if (epoll_wait(ep, &ev, 1, -1) == 1 && read(tfd, &x, sizeof(x)) == sizeof(x))
			n++;
		work(20);                 /* ~20 us of handling per tick */
	}
	getrusage(RUSAGE_SELF, &r1);
	double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1e9 +
		     (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) * 1e3;
	printf("ticks %ld\nprocess_cpu_ns %.0f\nwatchdog_cpu_ns %lu\nwatchdog_wakeups %ld\n", n, cpu,
	       (unsigned long)(watchdog_cpu_ns() - wd0), watchdog_wakeups() - wake0);
	return 0;
}

static int race(int seconds)
{
	long units = units_per_ms() / 10;    /* ~100 us */
	long sleeps = 0, eintr = 0, polls = 0, poll_eintr = 0;
	end_iteration();
	uint64_t end = ns(CLOCK_MONOTONIC) + (uint64_t)seconds * 1000000000u;
	while (ns(CLOCK_MONOTONIC) < end) {
		work(units);
		struct timespec ts = { 0, 10000 };
		if (sleeps <= polls) {
			sleeps++;
			eintr += nanosleep(&ts, NULL) != 0 && errno == EINTR;
		} else {
			polls++;
			poll_eintr += ppoll(NULL, 0, &ts, NULL) < 0 && errno == EINTR;
		}
	}
	end_iteration();
	printf("sleeps %ld\neintr %ld\npolls %ld\npoll_eintr %ld\n", sleeps, eintr, polls, poll_eintr);
	return 0;
}

static unsigned (*capture_now)(void *);
static volatile int empty_handler;

static void on_signal(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)si;
	if (!empty_handler)
		capture_now(uc);
}

/* ns per operation: the best of 7 batches of N */
static double best_of(long n, int sig, unsigned *frames)
{
	double best = 1e18;
	for (int b = 0; b < 7; b++) {
		uint64_t t0 = ns(CLOCK_MONOTONIC);
		for (long i = 0; i < n; i++) {
			if (sig)
				raise(sig);
			else
				*frames = capture_now(NULL);
		}
		double d = (double)(ns(CLOCK_MONOTONIC) - t0) / (double)n;
		best = d < best ? d : best;
	}
	return best;
}

__attribute__((noinline)) static int unwind_at(int depth, long n)
{
	if (depth > 1) {
		int r = unwind_at(depth - 1, n);
		__asm__ volatile("" ::: "memory");
		return r;
	}
	unsigned frames = 0;
	double here = best_of(n, 0, &frames);
	empty_handler = 1;
	double raise_only = best_of(n, SIGUSR1, &frames);
	empty_handler = 0;
	double in_handler = best_of(n, SIGUSR1, &frames);
	printf("frames %u\nunwind_ns %.0f\nsignal_unwind_ns %.0f\nsignal_ns %.0f\n", frames, here,
	       in_handler - raise_only, raise_only);
	return 0;
}

static int unwind(int depth, long n)
{
	const char *lib = getenv("CAPTURE_LIB");
	void *h = lib ? dlopen(lib, RTLD_NOW) : NULL;
	int (*init)(unsigned) = h ? (int (*)(unsigned))dlsym(h, "capture_init") : NULL;
	capture_now = h ? (unsigned (*)(void *))dlsym(h, "capture_now") : NULL;
	if (!init || !capture_now || init(32) != 0)
		return 2;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	return unwind_at(depth, n);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	prctl(PR_SET_TIMERSLACK, 1UL);
	ep = epoll_create1(0);
	end_iteration();                     /* a loop thread from here on */
	if (!strcmp(argv[1], "unwind") && argc == 4)
		return unwind(atoi(argv[2]), atol(argv[3]));
	if (!strcmp(argv[1], "stall"))
		return stall(atoi(argv[2]));
	if (!strcmp(argv[1], "healthy"))
		return healthy(atol(argv[2]));
	if (!strcmp(argv[1], "ticks"))
		return ticks(atoi(argv[2]), argc > 3 ? atol(argv[3]) : 1000);
	if (!strcmp(argv[1], "race"))
		return race(atoi(argv[2]));
	return 2;
}
