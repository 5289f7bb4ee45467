/* offcpu_waits MODE [ITERS] [MS] — an epoll loop whose every iteration waits
 * MS ms (default 300) in a way no hook of the shim sees (a raw syscall or
 * glibc's own stdio write), and checks the wait's result itself: a full
 * count, no EINTR.  Exit 0 only when every result was right.
 *
 * MODE: nanosleep | epoll (another epoll set) | read (a pipe a thread fills
 * late) | write (a full pipe a thread drains late) | futex | stdio (fwrite
 * on a full pipe) | usleep (hooked: the hook times it) | spin (CPU) |
 * naps (hooked sleeps each under block_ms). */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BIG (128 * 1024)

static int ms = 300, bad;
static int pfd[2];
static int word;
static char buf[BIG];

static void fail(const char *what, long r)
{
	fprintf(stderr, "offcpu_waits: %s returned %ld (%s)\n", what, r, r < 0 ? strerror(errno) : "short");
	bad = 1;
}

static void nap(int m)
{
	struct timespec ts = { m / 1000, (m % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* the helper thread: acts on the pipe or futex MS ms later */
static void *late_writer(void *arg)
{
	(void)arg;
	nap(ms);
	if (write(pfd[1], buf, 4096) != 4096)
		fail("helper write", -1);
	return NULL;
}

static void *late_reader(void *arg)
{
	size_t want = (size_t)(long)arg, got = 0;
	nap(ms);
	while (got < want) {
		ssize_t n = read(pfd[0], buf, sizeof(buf));
		if (n <= 0) {
			fail("helper read", n);
			break;
		}
		got += (size_t)n;
	}
	return NULL;
}

static void *late_waker(void *arg)
{
	(void)arg;
	nap(ms);
	__atomic_store_n(&word, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	return NULL;
}

static pthread_t helper(void *(*fn)(void *), void *arg)
{
	pthread_t th;
	pthread_create(&th, NULL, fn, arg);
	return th;
}

/* one per mode, never inlined: the tests look for them in the stack */
__attribute__((noinline)) void wait_in_nanosleep(void)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	long r = syscall(SYS_nanosleep, &ts, NULL);
	if (r != 0)
		fail("nanosleep", r);
}

__attribute__((noinline)) void wait_in_epoll(int other)
{
	struct epoll_event ev;
	long r = syscall(SYS_epoll_wait, other, &ev, 1, ms);
	if (r != 0)
		fail("epoll_wait", r);
}

__attribute__((noinline)) void wait_in_read(void)
{
	pthread_t th = helper(late_writer, NULL);
	long r = syscall(SYS_read, pfd[0], buf, 4096);
	if (r != 4096)
		fail("read", r);
	pthread_join(th, NULL);
}

__attribute__((noinline)) void wait_in_write(void)
{
	pthread_t th = helper(late_reader, (void *)(long)BIG);
	long r = syscall(SYS_write, pfd[1], buf, BIG);
	if (r != BIG)
		fail("write", r);
	pthread_join(th, NULL);
}

__attribute__((noinline)) void wait_in_futex(void)
{
	word = 0;
	pthread_t th = helper(late_waker, NULL);
	while (!__atomic_load_n(&word, __ATOMIC_SEQ_CST)) {
		long r = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
		if (r != 0 && errno != EAGAIN) {
			fail("futex", r);
			break;
		}
	}
	pthread_join(th, NULL);
}

__attribute__((noinline)) void wait_in_stdio(FILE *f)
{
	pthread_t th = helper(late_reader, (void *)(long)BIG);
	if (fwrite(buf, 1, BIG, f) != BIG || fflush(f) != 0)
		fail("fwrite", -1);
	pthread_join(th, NULL);
}

__attribute__((noinline)) void wait_in_usleep(void)
{
	if (usleep((useconds_t)ms * 1000) != 0)
		fail("usleep", -1);
}

__attribute__((noinline)) void spin_for(void)
{
	double end = now_ms() + ms;
	while (now_ms() < end)
		;
}

__attribute__((noinline)) void naps(void)
{
	double end = now_ms() + ms;
	while (now_ms() < end)
		usleep(3000);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "nanosleep";
	int iters = argc > 2 ? atoi(argv[2]) : 2;
	ms = argc > 3 ? atoi(argv[3]) : 300;
	int ep = epoll_create1(0), other = epoll_create1(0), efd = eventfd(1, 0);
	struct epoll_event ev = { .events = EPOLLIN };
	epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
	if (pipe(pfd) != 0)
		return 2;
	FILE *f = fdopen(pfd[1], "w");
	setvbuf(f, NULL, _IOFBF, BIG);
	for (int i = 0; i < iters; i++) {
		if (epoll_wait(ep, &ev, 1, -1) != 1)   /* always ready: an iteration */
			return 2;
		double t0 = now_ms();
		if (!strcmp(mode, "nanosleep"))
			wait_in_nanosleep();
		else if (!strcmp(mode, "epoll"))
			wait_in_epoll(other);
		else if (!strcmp(mode, "read"))
			wait_in_read();
		else if (!strcmp(mode, "write"))
			wait_in_write();
		else if (!strcmp(mode, "futex"))
			wait_in_futex();
		else if (!strcmp(mode, "stdio"))
			wait_in_stdio(f);
		else if (!strcmp(mode, "usleep"))
			wait_in_usleep();
		else if (!strcmp(mode, "spin"))
			spin_for();
		else if (!strcmp(mode, "naps"))
			naps();
		else
			return 2;
		printf("wait_ms %.3f\n", now_ms() - t0);   /* the truth the tests compare with */
	}
	epoll_wait(ep, &ev, 1, -1);     /* ends the last iteration */
	printf("%s\n", bad ? "BAD" : "OK");
	return bad;
}
