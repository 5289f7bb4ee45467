/* thread_churn.c N — N short-lived threads, 50 at a time, each runs a loop
 * of exactly one iteration (two epoll waits) and exits.  Prints resident
 * memory after the first 10% and at the end. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static int ep;

static void *one_iteration(void *arg)
{
	(void)arg;
	struct epoll_event ev;
	epoll_wait(ep, &ev, 1, 0);
	epoll_wait(ep, &ev, 1, 0);
	return NULL;
}

static long rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = atol(line + 6);
	if (f)
		fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 10000;
	ep = epoll_create1(0);
	pthread_t th[50];
	for (int done = 0; done < n; done += 50) {
		for (int i = 0; i < 50; i++)
			pthread_create(&th[i], NULL, one_iteration, NULL);
		for (int i = 0; i < 50; i++)
			pthread_join(th[i], NULL);
		if (done + 50 == n / 10)
			printf("rss_early_kb=%ld\n", rss_kb());
		if (done % 1000 == 0)
			usleep(30 * 1000); /* let the collector reclaim as it would in a real run */
	}
	printf("rss_end_kb=%ld\n", rss_kb());
	return 0;
}
