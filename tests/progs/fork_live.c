/* fork_live.c — an epoll loop that forks; the child goes on looping (in the
 * ring it inherited, moved to a file of its own), prints "ready PID" and
 * runs until a line (or EOF) arrives on stdin. */
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

static void waits(int n)
{
	struct epoll_event ev;
	int ep = epoll_create1(0);
	for (int i = 0; i < n; i++)
		epoll_wait(ep, &ev, 1, 1);
	close(ep);
}

int main(void)
{
	waits(5);
	pid_t pid = fork();
	if (pid < 0)
		return 2;
	if (pid == 0) {
		waits(5);
		printf("ready %d\n", (int)getpid());
		fflush(stdout);
		char line[16];
		if (!fgets(line, sizeof(line), stdin))
			line[0] = '\0';
		waits(5);
		return 0;
	}
	int status;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
