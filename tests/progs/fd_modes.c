/* fd_modes.c — an epoll loop whose calls run on fds in every mode the shim
 * follows (preload/fds.c), for tests/test_fds.py.
 *
 *   fd_modes fast      1,000 calls on each of 11 non-blocking fds or flags:
 *                      none of them may be timed
 *   fd_modes blocking  7 reads or recvs that wait 30 ms each on fds that
 *                      went blocking again or were never non-blocking:
 *                      every one must be reported
 * Prints one line per blocking call: "CALL FD". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <netinet/in.h>
#include <unistd.h>

#define N 1000

static int ep;
static char dir[] = "/tmp/fd_modesXXXXXX";

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void next_iteration(void)
{
	struct epoll_event ev;
	epoll_wait(ep, &ev, 1, 1);
}

static void calls_read(int fd)
{
	char c;
	for (int i = 0; i < N; i++)
		if (read(fd, &c, 1) != -1)
			die("read: not EAGAIN");
}

static void calls_recv(int fd, int flags)
{
	char c;
	for (int i = 0; i < N; i++)
		if (recv(fd, &c, 1, flags) != -1)
			die("recv: not EAGAIN");
}

static void fast(void)
{
	int p[2], s[2], q[2];
	if (pipe2(p, O_NONBLOCK) || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, s))
		die("pipe2/socketpair");
	calls_read(p[0]);
	next_iteration();
	calls_recv(s[0], 0);
	next_iteration();
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, q))
		die("socketpair");
	calls_recv(q[0], MSG_DONTWAIT);   /* blocking socket, non-blocking call */
	next_iteration();

	int b[2];
	if (pipe(b) || fcntl(b[0], F_SETFL, fcntl(b[0], F_GETFL) | O_NONBLOCK))
		die("pipe/fcntl");
	calls_read(b[0]);
	next_iteration();
	int on = 1;
	if (ioctl(q[1], FIONBIO, &on))
		die("ioctl");
	calls_recv(q[1], 0);
	next_iteration();

	int d = dup(p[0]), d2 = fcntl(s[0], F_DUPFD_CLOEXEC, 100);
	if (d < 0 || d2 < 0)
		die("dup");
	close(p[0]);
	calls_read(d);
	calls_recv(d2, 0);
	next_iteration();

	int e = eventfd(0, EFD_NONBLOCK), t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	if (e < 0 || t < 0)
		die("eventfd/timerfd");
	calls_read(e);
	calls_read(t);
	next_iteration();

	int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1))
		die("listen");
	for (int i = 0; i < N; i++)
		if (accept4(l, NULL, NULL, SOCK_NONBLOCK) != -1)
			die("accept4: not EAGAIN");
	next_iteration();
	int t2 = timerfd_create(CLOCK_MONOTONIC, 0);   /* blocking, then O_NONBLOCK by F_SETFL */
	if (t2 < 0 || fcntl(t2, F_SETFL, O_NONBLOCK))
		die("timerfd/F_SETFL");
	calls_read(t2);
}

struct later {
	int fd;          /* write a byte to it, or -1: make a file in dir */
	pthread_t th;
};

static void *later_main(void *arg)
{
	struct later *l = arg;
	usleep(30000);
	if (l->fd >= 0) {
		if (write(l->fd, "x", 1) != 1)
			die("later write");
	} else {
		char path[64];
		snprintf(path, sizeof(path), "%s/f", dir);
		int f = open(path, O_CREAT | O_WRONLY, 0600);
		close(f);
	}
	return NULL;
}

static struct later *in_30ms(int fd)
{
	struct later *l = calloc(1, sizeof(*l));
	l->fd = fd;
	if (pthread_create(&l->th, NULL, later_main, l))
		die("pthread_create");
	return l;
}

static void done(struct later *l)
{
	pthread_join(l->th, NULL);
	free(l);
}

/* One read that waits ~30 ms for a byte a helper thread writes. */
static void wait_read(int rfd, int wfd, int use_recv)
{
	char c;
	struct later *l = in_30ms(wfd);
	ssize_t r = use_recv ? recv(rfd, &c, 1, 0) : read(rfd, &c, 1);
	if (r != 1)
		die("wait_read");
	printf("%s %d\n", use_recv ? "recv" : "read", rfd);
	done(l);
	next_iteration();
}

static void blocking(void)
{
	int p[2], s[2], q[2];
	/* 1. a pipe that was never non-blocking */
	if (pipe(p))
		die("pipe");
	wait_read(p[0], p[1], 0);
	/* 2. non-blocking by F_SETFL, then blocking again */
	if (fcntl(p[0], F_SETFL, O_NONBLOCK) || fcntl(p[0], F_SETFL, 0))
		die("fcntl");
	wait_read(p[0], p[1], 0);
	/* 3. non-blocking by FIONBIO, then blocking again */
	int on = 1, off = 0;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) || ioctl(s[0], FIONBIO, &on) || ioctl(s[0], FIONBIO, &off))
		die("socketpair/ioctl");
	wait_read(s[0], s[1], 1);
	/* 4. a non-blocking pipe's number, closed and taken by a blocking pipe */
	int n[2];
	if (pipe2(n, O_NONBLOCK))
		die("pipe2");
	int num = n[0];
	close(n[0]);
	close(n[1]);
	if (pipe(q) || q[0] != num)
		die("pipe: number not reused");
	wait_read(q[0], q[1], 0);
	/* 5. a blocking fd dup2'd over a non-blocking one */
	if (pipe2(n, O_NONBLOCK) || dup2(p[0], n[0]) != n[0])
		die("dup2");
	wait_read(n[0], p[1], 0);
	/* 6. a non-blocking socket's FILE closed by fclose, its number taken by
	 * inotify (a call the shim does not follow), read blocking */
	int x = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	FILE *f = fdopen(x, "r");
	if (x < 0 || !f || fclose(f))
		die("fdopen/fclose");
	int in = inotify_init1(0);
	if (in != x || !mkdtemp(dir) || inotify_add_watch(in, dir, IN_CREATE) < 0)
		die("inotify");
	struct later *l = in_30ms(-1);
	char ev[256];
	if (read(in, ev, sizeof(ev)) <= 0)
		die("inotify read");
	printf("read %d\n", in);
	done(l);
	char path[64];
	snprintf(path, sizeof(path), "%s/f", dir);
	unlink(path);
	rmdir(dir);
	next_iteration();
	/* 7. a non-blocking socket made blocking through a dup of it: the mode
	 * belongs to the open file, so the original number waits too */
	int z[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, z))
		die("socketpair");
	int zd = dup(z[0]);
	if (zd < 0 || fcntl(zd, F_SETFL, 0))
		die("dup/F_SETFL");
	wait_read(z[0], z[1], 1);
}

int main(int argc, char **argv)
{
	ep = epoll_create1(0);
	if (ep < 0 || argc != 2)
		die("usage: fd_modes fast|blocking");
	setvbuf(stdout, NULL, _IONBF, 0);
	next_iteration();
	if (!strcmp(argv[1], "fast"))
		fast();
	else
		blocking();
	next_iteration();
	return 0;
}
