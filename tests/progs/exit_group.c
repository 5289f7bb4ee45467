/* exit_group.c — ends the way Go's runtime does: a raw exit_group from a
 * thread other than main, so no atexit handler and no destructor runs.
 * The main thread runs an epoll loop with one 30 ms usleep in it first;
 * the process exits with status 3 while main waits in epoll_wait. */
#include <pthread.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

static void *exiter(void *arg)
{
	(void)arg;
	usleep(100 * 1000);
	syscall(SYS_exit_group, 3);
	return NULL;
}

int main(void)
{
	struct epoll_event ev;
	int ep = epoll_create1(0);
	for (int i = 0; i < 5; i++) {
		epoll_wait(ep, &ev, 1, 5);
		if (i == 2)
			usleep(30 * 1000);
	}
	printf("looped\n");
	fflush(stdout);
	pthread_t th;
	pthread_create(&th, NULL, exiter, NULL);
	for (;;)
		epoll_wait(ep, &ev, 1, 1000);
}
