/* daemon.c — does what daemons do at start-up: closes every fd, dup2()s
 * /dev/null over 0-2, chdir("/"), setsid(); then puts a file of its own
 * at every fd number up to 4095 (where the shim may keep its trace fd) and
 * runs an epoll loop of 20 iterations of 10 ms with one 30 ms blocking
 * call, putting its file at every number again in each iteration, so that
 * any trace fd the shim opens meanwhile is taken too.  argv[1]: the victim
 * file. */
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
	int top = rl.rlim_cur < 4096 ? (int)rl.rlim_cur : 4096;
	struct epoll_event ev;
	int ep = epoll_create1(0);
	for (int i = 0; i < 20; i++) {
		/* every free number from 3 up now holds the victim: whatever fd
		 * the shim kept or reopened in this table is now the program's */
		for (int fd = 3; fd < top; fd++)
			if (fd != victim && fd != ep)
				dup2(victim, fd);
		epoll_wait(ep, &ev, 1, 10);
		if (i == 1)
			usleep(30 * 1000);
	}
	return 0;
}
