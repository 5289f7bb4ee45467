/* fork_in_loop.c — a loop that forks from inside an iteration, as a
 * server's callback does for a helper.  The child never waits in a loop: it
 * sleeps 30 ms (a blocking call only on a loop thread) and exits.  The
 * parent waits for it, then runs 3 more iterations.  Prints "child=PID". */
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	struct epoll_event ev;
	int ep = epoll_create1(0);
	for (int i = 0; i < 6; i++) {
		epoll_wait(ep, &ev, 1, 2);
		if (i != 2)
			continue;
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			usleep(30 * 1000);
			exit(0);
		}
		int status;
		waitpid(pid, &status, 0);
		printf("child=%d\n", (int)pid);
	}
	return 0;
}
