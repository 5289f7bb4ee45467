/* fork_thread_return: a thread forks; in the child that thread (its only
 * one) starts and joins a thread of its own, then returns from its start
 * function: no exit, no pthread_exit.  glibc ends the child then, with
 * status 0 (CPython's threads end this way).  The parent waits up to 30 s
 * for it; prints "reaped STATUS" or "hung" (then kills it). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void *helper(void *arg)
{
	return arg;
}

static void *worker(void *arg)
{
	(void)arg;
	pid_t child = fork();
	if (child == 0) {
		pthread_t th;
		if (pthread_create(&th, NULL, helper, NULL) == 0)
			pthread_join(th, NULL);
		return NULL;    /* the child's last thread ends here */
	}
	for (int i = 0; i < 3000; i++) {
		int status;
		if (waitpid(child, &status, WNOHANG) == child) {
			printf("reaped %d\n", status);
			return NULL;
		}
		struct timespec ts = { 0, 10000000 };
		nanosleep(&ts, NULL);
	}
	printf("hung\n");
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return NULL;
}

int main(void)
{
	pthread_t th;
	if (pthread_create(&th, NULL, worker, NULL) != 0)
		return 1;
	pthread_join(th, NULL);
	return 0;
}
