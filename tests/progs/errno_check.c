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
#include <sys/uio.h>
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

static int restart_fd = -1;
static int ticks;

static void on_tick(int sig)
{
	(void)sig;
	if (++ticks == 2)
		write(restart_fd, "r", 1);    /* ends the read that restarted */
}

static void every_30ms(void (*handler)(int), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { { 0, 30000 }, { 0, 30000 } };
	setitimer(ITIMER_REAL, &it, NULL);
}

static void stop_timer(void)
{
	struct itimerval it = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &it, NULL);
}

/* the call first, then its errno */
#define SHOW(what, call)                       \
	do {                                   \
		errno = 0;                     \
		long r_ = (call);              \
		show(what, r_, errno);         \
	} while (0)

/* Calls on fds that can block: the shim makes these syscalls itself
 * (preload/raw.c), so every result and errno is its own doing. */
static void raw_calls(int ep)
{
	char buf[8];
	int b[2], s[2];
	pipe(b);
	socketpair(AF_UNIX, SOCK_STREAM, 0, s);
	signal(SIGPIPE, SIG_IGN);
	SHOW("write(blocking pipe)", write(b[1], "xyz", 3));
	SHOW("read(blocking pipe)", read(b[0], buf, sizeof(buf)));
	struct iovec iov = { buf, 2 };
	SHOW("writev(blocking pipe)", writev(b[1], &iov, 1));
	SHOW("readv(blocking pipe)", readv(b[0], &iov, 1));
	SHOW("pread(pipe)", pread(b[0], buf, 1, 0));
	SHOW("pwrite(pipe)", pwrite(b[1], buf, 1, 0));
	write(b[1], "q", 1);
	void *volatile bad = (void *)8;         /* hidden from the compiler's checks */
	SHOW("read(bad buffer)", read(b[0], bad, 1));
	SHOW("read(blocking pipe, 1 byte)", read(b[0], buf, 1));
	SHOW("recv(blocking pipe)", recv(b[0], buf, 1, 0));
	SHOW("send(socket)", send(s[0], "ab", 2, 0));
	SHOW("recv(socket)", recv(s[1], buf, sizeof(buf), 0));
	SHOW("sendto(socket)", sendto(s[0], "cd", 2, 0, NULL, 0));
	SHOW("recvfrom(socket)", recvfrom(s[1], buf, sizeof(buf), 0, NULL, NULL));
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	SHOW("sendmsg(socket)", sendmsg(s[0], &m, 0));
	SHOW("recvmsg(socket)", recvmsg(s[1], &m, 0));
	struct epoll_event ev;
	SHOW("epoll_pwait(bad fd)", epoll_pwait(-1, &ev, 1, 0, NULL));

	every_30ms(on_alarm, 0);        /* no SA_RESTART */
	SHOW("read(interrupted)", read(b[0], buf, 1));
	SHOW("epoll_wait(interrupted)", epoll_wait(ep, &ev, 1, -1));
	stop_timer();
	restart_fd = b[1];
	every_30ms(on_tick, SA_RESTART);
	SHOW("read(restarted)", read(b[0], buf, 1));
	stop_timer();

	close(b[0]);
	SHOW("write(pipe, reader gone)", write(b[1], "x", 1));
	close(s[1]);
	SHOW("send(socket, peer gone)", send(s[0], "x", 1, MSG_NOSIGNAL));
	SHOW("recv(socket, peer gone)", recv(s[0], buf, 1, 0));
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
	raw_calls(ep);
	return 0;
}
