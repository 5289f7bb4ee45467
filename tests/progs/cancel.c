/* cancel.c — pthread_cancel of a loop thread that waits in a call the shim
 * makes as its own syscall (preload/raw.c), for tests/test_core.py.
 *
 *   cancel MODE
 *   read    the loop thread waits in read() on a blocking pipe
 *   recv    ... in recv() on a blocking socket
 *   epoll   ... in its own epoll_wait(), no timeout
 *   poll    ... in poll() (a poll loop: it polled with a timeout twice)
 *   masked  read, but the thread blocks every signal first
 *   inherit read, in a thread created with every signal blocked
 *   early   the cancel comes while the thread computes; read is the next
 *           cancellation point
 *
 * Main waits until the thread is inside the syscall (/proc/self/task/TID/
 * syscall), prints the object its pc is in ("in libasyncshim.so": the
 * shim made the syscall), cancels it and joins it: "joined canceled".
 * A cancellation that never happens ends the process by alarm (exit 142). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *mode;
static int fds[2];
static volatile pid_t tid;
static volatile int go;

static void become_loop(void)
{
	if (strcmp(mode, "poll") == 0) {
		poll(NULL, 0, 1);
		poll(NULL, 0, 1);
		return;
	}
	struct epoll_event ev;
	int ep = epoll_create1(0);
	epoll_wait(ep, &ev, 1, 0);
}

static void *loop(void *arg)
{
	(void)arg;
	become_loop();
	if (strcmp(mode, "masked") == 0) {
		sigset_t all;
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, NULL);
	}
	tid = (pid_t)syscall(SYS_gettid);
	char c;
	if (strcmp(mode, "early") == 0) {
		while (!go)
			;               /* computing: no cancellation point */
		read(fds[0], &c, 1);
	} else if (strcmp(mode, "recv") == 0) {
		recv(fds[0], &c, 1, 0);
	} else if (strcmp(mode, "epoll") == 0) {
		struct epoll_event ev;
		epoll_wait(epoll_create1(0), &ev, 1, -1);
	} else if (strcmp(mode, "poll") == 0) {
		struct pollfd p = { .fd = fds[0], .events = POLLIN };
		poll(&p, 1, -1);
	} else {
		read(fds[0], &c, 1);
	}
	printf("returned\n");   /* a cancelled thread never gets here */
	return NULL;
}

/* the object the thread's pc is in while it waits in a syscall */
static const char *waiting_in(void)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	for (int i = 0; i < 5000; i++) {
		FILE *f = fopen(path, "r");
		size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
		if (f)
			fclose(f);
		buf[n] = '\0';
		if (n && strncmp(buf, "running", 7) != 0 && strchr(buf, ' ')) {
			const char *last = strrchr(buf, ' ');
			void *pc = (void *)strtoul(last + 1, NULL, 16);
			Dl_info info;
			if (dladdr(pc, &info) && info.dli_fname)
				return strrchr(info.dli_fname, '/') ? strrchr(info.dli_fname, '/') + 1 : info.dli_fname;
			return "?";
		}
		usleep(1000);
	}
	return "never waited";
}

int main(int argc, char **argv)
{
	mode = argc > 1 ? argv[1] : "read";
	setvbuf(stdout, NULL, _IONBF, 0);
	alarm(10);
	int r = strcmp(mode, "recv") == 0 ? socketpair(AF_UNIX, SOCK_STREAM, 0, fds) : pipe(fds);
	if (r != 0)
		return 1;
	sigset_t all, old;
	sigfillset(&all);
	if (strcmp(mode, "inherit") == 0)
		pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_t th;
	if (pthread_create(&th, NULL, loop, NULL) != 0)
		return 1;
	if (strcmp(mode, "inherit") == 0)
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	while (!tid)
		usleep(1000);
	if (strcmp(mode, "early") == 0) {
		usleep(20000);
		pthread_cancel(th);
		go = 1;
	} else {
		printf("in %s\n", waiting_in());
		pthread_cancel(th);
	}
	void *res;
	pthread_join(th, &res);
	printf("joined %s\n", res == PTHREAD_CANCELED ? "canceled" : "not canceled");
	return 0;
}
