/* collector.c — load for the collector: THREADS loop threads that do
 * nothing but wait (epoll_wait, timeout 0), so every call is one iteration
 * record, for SECONDS.  Then it lets the collector drain, and prints the CPU
 * time the shim's own threads used meanwhile, read from each thread's CPU
 * clock (the collector is the shim thread that is not "asyncshim-wd").
 *
 *   collector THREADS SECONDS
 *   -> CALLS n  COLLECTOR_NS n  WATCHDOG_NS n  WALL_NS n
 *
 * bench/bench.py takes the events drained and dropped and the bytes written
 * from the trace this run leaves.  With BENCH_STUB=1 (bench/libstub.so
 * preloaded after the shim) the wait costs no syscall, so the producers make
 * iterations as fast as the hook allows. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define STUB_FD 902              /* bench/libstub.c: epoll_wait answers at once */
#define MAX_THREADS 1024

static volatile int stop;
static pid_t tids[MAX_THREADS + 1];
static int nthreads;
static pthread_barrier_t ready;

struct producer {
	pthread_t th;
	long calls;
	int idx;
};

static double now_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *produce(void *arg)
{
	struct producer *p = arg;
	struct epoll_event ev;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int fd = getenv("BENCH_STUB") ? STUB_FD : ep;
	tids[p->idx + 1] = (pid_t)syscall(SYS_gettid);
	pthread_barrier_wait(&ready);
	long n = 0;
	while (!stop) {
		for (int i = 0; i < 64; i++)
			epoll_wait(fd, &ev, 1, 0);
		n += 64;
	}
	p->calls = n;
	close(ep);
	return NULL;
}

static int ours(pid_t tid)
{
	for (int i = 0; i <= nthreads; i++)
		if (tids[i] == tid)
			return 1;
	return 0;
}

/* CPU ns of the threads that are not the program's: collector, watchdog. */
static void shim_cpu(double *collector, double *watchdog)
{
	*collector = *watchdog = 0;
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		pid_t tid = (pid_t)atoi(e->d_name);
		if (tid <= 0 || ours(tid))
			continue;
		char path[64], name[32] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)tid);
		int fd = open(path, O_RDONLY);
		if (fd >= 0) {
			ssize_t n = read(fd, name, sizeof(name) - 1);
			name[n > 0 ? n : 0] = '\0';
			close(fd);
		}
		/* the CPU clock of any thread of this process, by tid */
		clockid_t c = (clockid_t)((~(unsigned)tid << 3) | 6);
		double ns = now_ns(c);
		if (!strncmp(name, "asyncshim-wd", 12))
			*watchdog += ns;
		else
			*collector += ns;
	}
	if (d)
		closedir(d);
}

int main(int argc, char **argv)
{
	if (argc != 3 || (nthreads = atoi(argv[1])) < 1 || nthreads > MAX_THREADS) {
		fprintf(stderr, "usage: collector THREADS SECONDS\n");
		return 2;
	}
	double seconds = atof(argv[2]);
	struct producer *ps = calloc((size_t)nthreads, sizeof(*ps));
	tids[0] = getpid();
	pthread_barrier_init(&ready, NULL, (unsigned)nthreads + 1);
	for (int i = 0; i < nthreads; i++) {
		ps[i].idx = i;
		if (pthread_create(&ps[i].th, NULL, produce, &ps[i])) {
			fprintf(stderr, "collector: cannot start thread\n");
			return 1;
		}
	}
	pthread_barrier_wait(&ready);
	double c0, w0, c1, w1, t0 = now_ns(CLOCK_MONOTONIC);
	shim_cpu(&c0, &w0);
	struct timespec ts = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
	nanosleep(&ts, NULL);
	stop = 1;
	long calls = 0;
	for (int i = 0; i < nthreads; i++) {
		pthread_join(ps[i].th, NULL);
		calls += ps[i].calls;
	}
	struct timespec drain = { 0, 200000000 };   /* ten collector periods */
	nanosleep(&drain, NULL);
	shim_cpu(&c1, &w1);
	printf("CALLS %ld COLLECTOR_NS %.0f WATCHDOG_NS %.0f WALL_NS %.0f\n", calls, c1 - c0, w1 - w0,
	       now_ns(CLOCK_MONOTONIC) - t0);
	free(ps);
	return 0;
}
