/* probe.c — two properties of the machine that decide what a hook costs
 * around a real syscall, measured the way bench/calls.c measures hooks
 * (alternating 100-call blocks, thread CPU clock, median of pair
 * differences over 3000 pairs):
 *
 *   PAGES n   ns added per read() by touching n more pages after each one
 *             (a kernel that flushes the TLB at every syscall makes each a
 *             page walk), against touching n cache lines of one page
 *   WRAP      ns added per read() by a wrapper that calls it and returns,
 *             against one that tail-jumps to it (the return after a syscall
 *             is what a timing hook cannot avoid), and by a wrapper that
 *             makes read's syscall itself and returns (preload/raw.c)
 *
 * The process has a second thread, as every process under the shim does,
 * so libc's read does its cancellation bookkeeping as it would there.
 *
 * Prints: PAGES n distinct_ns same_page_ns, then WRAP tail_ns call_ns raw_ns */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAIRS 3000
#define CALLS 100

static int p[2];
static char pages[16 * 4096] __attribute__((aligned(4096)));
static volatile long sink;
static ssize_t (*volatile real_read)(int, void *, size_t) = read;

static double cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v)
{
	qsort(v, PAIRS, sizeof(*v), cmp);
	return v[PAIRS / 2];
}

/* n loads after each read: from n pages (stride 4096 + 64), or from n
 * lines of the first page (stride 64) */
static __attribute__((noinline)) double touch_block(int n, int stride)
{
	char c;
	double t0 = cpu_ns();
	for (int i = 0; i < CALLS; i++) {
		read(p[0], &c, 1);
		for (int j = 0; j < n; j++)
			sink += pages[j * stride];
	}
	return (cpu_ns() - t0) / CALLS;
}

static __attribute__((noinline)) ssize_t wrap_tail(int fd, void *b, size_t n)
{
	return real_read(fd, b, n);
}

static __attribute__((noinline)) ssize_t wrap_call(int fd, void *b, size_t n)
{
	ssize_t r = real_read(fd, b, n);
	sink += r;
	return r;
}

static __attribute__((noinline)) ssize_t wrap_raw(int fd, void *b, size_t n)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "0"((long)SYS_read), "D"((long)fd), "S"(b), "d"(n)
			 : "rcx", "r11", "memory");
	if ((unsigned long)r > -4096UL) {
		errno = (int)-r;
		return -1;
	}
	sink += r;
	return r;
}

static ssize_t (*volatile fns[4])(int, void *, size_t) = { read, wrap_tail, wrap_call, wrap_raw };

static void *idle(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static __attribute__((noinline)) double wrap_block(int which)
{
	char c;
	ssize_t (*f)(int, void *, size_t) = fns[which];
	double t0 = cpu_ns();
	for (int i = 0; i < CALLS; i++)
		f(p[0], &c, 1);
	return (cpu_ns() - t0) / CALLS;
}

int main(void)
{
	static double a[PAIRS], b[PAIRS], c[PAIRS];
	pthread_t th;
	if (pipe2(p, O_NONBLOCK) != 0 || pthread_create(&th, NULL, idle, NULL) != 0)
		return 1;
	for (size_t i = 0; i < sizeof(pages); i += 64)
		pages[i] = 1;
	for (int n = 4; n <= 8; n += 4) {
		for (int i = 0; i < PAIRS; i++) {
			double base = touch_block(0, 0);
			a[i] = touch_block(n, 4096 + 64) - base;
			b[i] = touch_block(n, 64) - base;
		}
		printf("PAGES %d %.2f %.2f\n", n, median(a), median(b));
	}
	for (int i = 0; i < PAIRS; i++) {
		double base = wrap_block(0);
		a[i] = wrap_block(1) - base;
		b[i] = wrap_block(2) - base;
		c[i] = wrap_block(3) - base;
	}
	printf("WRAP %.2f %.2f %.2f\n", median(a), median(b), median(c));
	return 0;
}
