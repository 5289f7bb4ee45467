#define _GNU_SOURCE
/* signal_storm.c N [nowait] — a loop thread spins on epoll_wait(0) and a
 * read on an empty non-blocking pipe while another thread sends it N
 * SIGUSR1s; the handler writes to /dev/null and (unless "nowait") waits
 * itself, in epoll_wait, nested inside whatever hook it interrupted.  Prints
 * every wait made, so the test can check the iterations recorded. */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static int ep, devnull, pipefd[2];
static volatile sig_atomic_t handler_waits;
static int handler_may_wait = 1;
static atomic_int stop, started;
static pthread_t loop;

static void on_usr1(int sig)
{
	(void)sig;
	struct epoll_event ev;
	if (handler_may_wait) {
		epoll_wait(ep, &ev, 1, 0);
		handler_waits++;
	}
	if (write(devnull, "x", 1) != 1)
		abort();
}

static void *sender(void *arg)
{
	int n = *(int *)arg;
	while (!atomic_load(&started))
		;
	for (int i = 0; i < n; i++)
		pthread_kill(loop, SIGUSR1);
	/* On a busy machine the two threads may share one core, and a pending
	 * SIGUSR1 absorbs the ones sent meanwhile: go on, yielding the core
	 * after each, until handlers have waited often enough (at most ~10 s). */
	for (int i = 0; handler_may_wait && handler_waits < 200 && i < 1000000; i++) {
		pthread_kill(loop, SIGUSR1);
		sched_yield();
	}
	atomic_store(&stop, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 100000;
	handler_may_wait = !(argc > 2 && !strcmp(argv[2], "nowait"));
	ep = epoll_create1(0);
	devnull = open("/dev/null", O_WRONLY);
	if (pipe2(pipefd, O_NONBLOCK) != 0)
		return 1;
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	loop = pthread_self();
	pthread_t s;
	pthread_create(&s, NULL, sender, &n);
	long waits = 0;
	char c;
	struct epoll_event ev;
	for (;;) {
		epoll_wait(ep, &ev, 1, 0);
		waits++;
		if (read(pipefd[0], &c, 1) != -1)
			abort();
		if (waits == 10)
			atomic_store(&started, 1);
		/* at least 5,000 waits (a few ms): more than a 4 KiB ring holds
		 * between two drains, however few the storm left time for */
		if (atomic_load(&stop) && waits > 5000)
			break;
	}
	pthread_join(s, NULL);
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	printf("waits=%ld handler_waits=%ld\n", waits + handler_waits, (long)handler_waits);
	return 0;
}
