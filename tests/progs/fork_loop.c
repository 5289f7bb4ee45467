/* fork_loop.c — parent and forked child each run a short epoll loop with
 * one 30 ms usleep in it; each must write its own trace. */
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

static void short_loop(void)
{
	struct epoll_event ev;
	int ep = epoll_create1(0);
	for (int i = 0; i < 5; i++) {
		epoll_wait(ep, &ev, 1, 5);
		if (i == 2)
			usleep(30 * 1000);
	}
}

int main(void)
{
	short_loop();
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		short_loop();
		return 0;
	}
	int status;
	waitpid(pid, &status, 0);
	printf("child=%d\n", (int)pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
