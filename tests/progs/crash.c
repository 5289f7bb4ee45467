/* crash.c MODE — an epoll loop makes one 30 ms blocking call, then dies:
 *   segv     write through NULL          abort   abort()
 *   kill     print "ready" and wait for SIGKILL
 *   handled  own SIGSEGV handler that prints and _exit(3)s
 *   _exit    _exit(4) without running destructors
 *   pthread_exit  main thread pthread_exit()s while the loop thread finishes */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static void loop_with_one_block(void)
{
	struct epoll_event ev;
	int ep = epoll_create1(0);
	for (int i = 0; i < 4; i++) {
		epoll_wait(ep, &ev, 1, 2);
		if (i == 1)
			usleep(30 * 1000);
	}
}

static void on_segv(int sig)
{
	(void)sig;
	static const char msg[] = "handled SIGSEGV\n";
	if (write(1, msg, sizeof(msg) - 1) < 0)
		_exit(5);
	_exit(3);
}

static void *loop_thread(void *arg)
{
	(void)arg;
	usleep(50 * 1000);
	loop_with_one_block();
	return NULL;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "segv";
	if (!strcmp(mode, "pthread_exit")) {
		pthread_t th;
		pthread_create(&th, NULL, loop_thread, NULL);
		pthread_exit(NULL);
	}
	if (!strcmp(mode, "handled"))
		signal(SIGSEGV, on_segv);
	loop_with_one_block();
	fflush(stdout);
	if (!strcmp(mode, "segv") || !strcmp(mode, "handled"))
		*(volatile int *)0 = 1;
	if (!strcmp(mode, "abort"))
		abort();
	if (!strcmp(mode, "_exit"))
		_exit(4);
	if (!strcmp(mode, "kill")) {
		printf("ready\n");
		fflush(stdout);
		for (;;)
			pause();
	}
	return 0;
}
