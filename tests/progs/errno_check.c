/* errno_check.c — return values and errno of interposed calls, on a loop
 * thread (it epoll_waits first), must be exactly those of the real calls.
 * Prints one line per check; the test compares the output with and without
 * the shim and against the expected values. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void on_alarm(int sig)
{
	(void)sig;
}

static void show(const char *what, long r, int e)
{
	printf("%s r=%ld errno=%s\n", what, r, r < 0 ? strerrorname_np(e) : "-");
}

int main(void)
{
	struct epoll_event ev;
	int ep = epoll_create1(0);
	epoll_wait(ep, &ev, 1, 0); /* become a loop thread */

	char buf[8];
	errno = 0;
	long r = read(-1, buf, sizeof(buf));
	show("read(bad fd)", r, errno);

	int p[2];
	pipe2(p, O_NONBLOCK);
	errno = 0;
	r = read(p[0], buf, sizeof(buf));
	show("read(empty nonblocking pipe)", r, errno);
	r = write(p[1], "abc", 3);
	show("write(pipe)", r, errno);
	r = read(p[0], buf, sizeof(buf));
	show("read(pipe with 3 bytes)", r, errno);

	r = recv(p[0], buf, sizeof(buf), 0);
	show("recv(not a socket)", r, errno);
	r = open("/nonexistent/asyncshim", O_RDONLY);
	show("open(missing)", r, errno);
	r = fsync(-5);
	show("fsync(bad fd)", r, errno);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm; /* no SA_RESTART: sleeps return EINTR */
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { { 0, 0 }, { 0, 50000 } };
	setitimer(ITIMER_REAL, &it, NULL);
	struct timespec ts = { 2, 0 }, rem;
	errno = 0;
	r = nanosleep(&ts, &rem);
	show("nanosleep(interrupted)", r, errno);

	setitimer(ITIMER_REAL, &it, NULL);
	errno = 0;
	r = usleep(2000000);
	show("usleep(interrupted)", r, errno);

	setitimer(ITIMER_REAL, &it, NULL);
	r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &rem);
	printf("clock_nanosleep(interrupted) r=%ld (returns the error)%s\n", r, r == EINTR ? " EINTR" : "");

	errno = 0;
	r = epoll_wait(-1, &ev, 1, 0);
	show("epoll_wait(bad fd)", r, errno);
	return 0;
}
