/* memory.c — resident memory of THREADS loop threads after SECONDS of
 * iterations (epoll_wait, timeout 0, at least 40000 each: more than a
 * default 1 MiB ring holds, so every ring page has been written).  The
 * threads then park, the collector gets 200 ms to drain, and the process
 * prints its resident set.  bench/bench.py runs it bare and shimmed, with
 * 1 and 9 threads (the slope is the cost per thread) and for a short and a
 * long run (a bounded total does not grow with run length).
 *
 *   memory THREADS SECONDS  ->  RSS_KB n PRIVATE_KB n */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

static pthread_barrier_t done, leave;
static double seconds;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *loop(void *arg)
{
	(void)arg;
	struct epoll_event ev;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	double end = now() + seconds;
	for (long n = 0; n < 40000 || now() < end; n++)
		epoll_wait(ep, &ev, 1, 0);
	pthread_barrier_wait(&done);
	pthread_barrier_wait(&leave);
	close(ep);
	return NULL;
}

/* smaps_rollup walks the page tables: exact.  VmRSS in /proc/self/status
 * comes from per-CPU counters that lag by up to a batch per CPU.  FIELD:
 * "Rss:", "Anonymous:", "Pss_Shmem:" (the rings, mapped by this process
 * alone, so their Pss is their Rss). */
static long rollup_kb(const char *field)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, field, strlen(field)))
			kb = atol(line + strlen(field));
	if (f)
		fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	int n = argc == 3 ? atoi(argv[1]) : 0;
	if (n < 1 || n > 4096) {
		fprintf(stderr, "usage: memory THREADS SECONDS\n");
		return 2;
	}
	seconds = atof(argv[2]);
	pthread_t *th = calloc((size_t)n, sizeof(*th));
	pthread_barrier_init(&done, NULL, (unsigned)n + 1);
	pthread_barrier_init(&leave, NULL, (unsigned)n + 1);
	for (int i = 0; i < n; i++)
		if (pthread_create(&th[i], NULL, loop, NULL)) {
			fprintf(stderr, "memory: cannot start thread\n");
			return 1;
		}
	pthread_barrier_wait(&done);
	struct timespec drain = { 0, 200000000 };
	nanosleep(&drain, NULL);
	/* resident in all, and what the process itself allocated (anonymous
	 * and shared memory: not the page cache's pages of its libraries,
	 * which vary from run to run with the code paths taken) */
	printf("RSS_KB %ld PRIVATE_KB %ld\n", rollup_kb("Rss:"), rollup_kb("Anonymous:") + rollup_kb("Pss_Shmem:"));
	fflush(stdout);
	pthread_barrier_wait(&leave);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	free(th);
	return 0;
}
