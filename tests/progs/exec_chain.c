/* exec_chain.c STEP — step "first": an epoll loop with a 30 ms blocking
 * call, a failed exec (recording must go on), another 20 ms blocking call,
 * then exec of itself with step "second", which blocks 40 ms and prints
 * what LD_PRELOAD it got.  Step "spawn": posix_spawn "second", wait.
 * Step "vfork": a loop thread that vforks and execs "second" from the child. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void loop_blocking(int ms)
{
	struct epoll_event ev;
	int ep = epoll_create1(0);
	for (int i = 0; i < 3; i++) {
		epoll_wait(ep, &ev, 1, 1);
		if (i == 1)
			usleep((useconds_t)ms * 1000);
	}
	close(ep);
}

int main(int argc, char **argv)
{
	const char *step = argc > 1 ? argv[1] : "first";
	if (!strcmp(step, "second")) {
		const char *pre = getenv("LD_PRELOAD");
		printf("second pid=%d preload=%s\n", (int)getpid(), pre && strstr(pre, "libasyncshim") ? "shim" : "none");
		loop_blocking(40);
		return 0;
	}
	if (!strcmp(step, "spawn")) {
		pid_t pid;
		char *args[] = { argv[0], "second", NULL };
		fflush(stdout);
		if (posix_spawn(&pid, argv[0], NULL, NULL, args, environ) != 0)
			return 1;
		int st;
		waitpid(pid, &st, 0);
		return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
	}
	if (!strcmp(step, "vfork")) {
		loop_blocking(30);
		fflush(stdout);
		pid_t pid = vfork();
		if (pid == 0) {
			execl(argv[0], argv[0], "second", (char *)NULL);
			_exit(127);
		}
		int st;
		waitpid(pid, &st, 0);
		loop_blocking(20);
		printf("parent pid=%d\n", (int)getpid());
		return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
	}
	printf("first pid=%d\n", (int)getpid());
	fflush(stdout);
	loop_blocking(30);
	char *bad[] = { "/nonexistent/asyncshim-test", NULL };
	if (execv(bad[0], bad) != -1)
		return 1;
	loop_blocking(20);
	execl(argv[0], argv[0], "second", (char *)NULL);
	return 1;
}
