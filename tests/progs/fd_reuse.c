/* fd_reuse.c — a daemon's fd hygiene around the shim's stack captures.
 *
 * It becomes a loop thread, makes a blocking call (so the shim captures a
 * stack: set-up done), then closes every fd from 3 up (close_range, as
 * daemons do) and reuses the low numbers: an epoll fd (3) and a socketpair
 * (4, 5) with five bytes waiting on 4.  Then an epoll loop whose handler
 * makes blocking calls at a few depths, each captured with its stack.
 * Afterwards each fd must be what the program made, hold what it put in,
 * and 5 must have received nothing; every other fd still open (the shim's)
 * must be close-on-exec and above the numbers the program uses.
 * Prints "ok" or what went wrong (exit 1). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int bad;

static void fail(const char *what)
{
	printf("%s (errno %d)\n", what, errno);
	bad = 1;
}

/* Frames of 1 KiB: each capture walks stack pages the ones before did not
 * (libunwind 1.6 remembered four validated pages and used its pipe only
 * for new ones). */
__attribute__((noinline)) static void block(int depth)
{
	volatile char pad[1024];
	pad[0] = (char)depth;
	if (depth > 0)
		block(depth - 1);
	else
		usleep(40 * 1000);
	(void)pad[0];
}

static void check_fds(int ep)
{
	struct epoll_event ev;
	if (epoll_wait(ep, &ev, 1, 0) < 0)
		fail("epoll_wait on the program's epoll fd failed");
	char buf[8];
	ssize_t n = recv(4, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	if (n != 5 || memcmp(buf, "hello", 5) != 0)
		fail("fd 4 lost its bytes");
	n = recv(5, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != -1 || (errno != EAGAIN && errno != EWOULDBLOCK))
		fail("fd 5 received bytes the program never sent");
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] == '.' || fd == dirfd(d) || fd <= 5)
			continue;
		int flags = fcntl(fd, F_GETFD);
		if (flags < 0 || !(flags & FD_CLOEXEC) || fd < 64) {
			char path[64], target[256] = "";
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			if (readlink(path, target, sizeof(target) - 1) < 0)
				strcpy(target, "?");
			printf("fd %d (%s) is not the program's: cloexec=%d\n", fd, target,
			       flags >= 0 && (flags & FD_CLOEXEC));
			bad = 1;
		}
	}
	if (d)
		closedir(d);
}

int main(void)
{
	int ep = epoll_create1(0);
	struct epoll_event ev;
	epoll_wait(ep, &ev, 1, 0);      /* a loop thread from here on */
	block(0);                       /* a first capture */
	if (syscall(SYS_close_range, 3U, ~0U, 0) != 0)
		fail("close_range");
	ep = epoll_create1(0);
	int sv[2];
	if (ep != 3 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || sv[0] != 4 || sv[1] != 5) {
		printf("fds not reused as expected: %d %d %d\n", ep, sv[0], sv[1]);
		return 1;
	}
	if (write(5, "hello", 5) != 5)
		fail("write");
	ev.events = EPOLLIN;
	ev.data.fd = 4;
	epoll_ctl(ep, EPOLL_CTL_ADD, 4, &ev);
	for (int i = 0; i < 4; i++) {
		if (epoll_wait(ep, &ev, 1, 0) < 0)
			fail("epoll_wait in the loop");
		block(4 + i * 4);
	}
	check_fds(ep);
	if (!bad)
		printf("ok\n");
	return bad;
}
