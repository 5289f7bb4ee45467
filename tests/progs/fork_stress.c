/* fork_stress.c N — two loop threads hammer hooked calls (and record
 * blocking calls and iterations) while the main thread forks N children;
 * each child runs a short loop and exits.  Exits 0 when every child did. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int stop;

static void *hammer(void *arg)
{
	(void)arg;
	struct epoll_event ev;
	int ep = epoll_create1(0);
	char c;
	int p[2];
	if (pipe(p) != 0)
		return NULL;
	while (!atomic_load(&stop)) {
		epoll_wait(ep, &ev, 1, 0);
		if (write(p[1], "x", 1) != 1 || read(p[0], &c, 1) != 1)
			abort();
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 100;
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, hammer, NULL);
	int failed = 0;
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			struct epoll_event ev;
			int ep = epoll_create1(0);
			for (int k = 0; k < 3; k++)
				epoll_wait(ep, &ev, 1, 1);
			exit(0);
		}
		int st;
		if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
			failed++;
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	printf("forks=%d failed=%d\n", n, failed);
	return failed != 0;
}
