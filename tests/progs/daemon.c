/* daemon.c — does what daemons do at start-up: closes every fd, dup2()s
 * /dev/null over 0-2, chdir("/"), setsid(); then puts a file of its own
 * at a high fd number (where the shim may have kept its trace fd) and runs
 * an epoll loop with one 30 ms blocking call.  argv[1]: the victim file. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int victim = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (victim < 0)
		return 2;
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	for (int fd = 0; fd < (int)rl.rlim_cur && fd < 65536; fd++)
		if (fd != victim)
			close(fd);
	int null = open("/dev/null", O_RDWR);
	dup2(null, 0);
	dup2(null, 1);
	dup2(null, 2);
	if (chdir("/") != 0 || setsid() < 0)
		return 2;
	/* every number from 3 up to 1023 now holds the victim: whatever fd the
	 * shim kept is now the program's */
	for (int fd = 3; fd < 1024; fd++)
		if (fd != victim)
			dup2(victim, fd);
	struct epoll_event ev;
	int ep = epoll_create1(0);
	for (int i = 0; i < 4; i++) {
		epoll_wait(ep, &ev, 1, 2);
		if (i == 1)
			usleep(30 * 1000);
	}
	return 0;
}
