/* uid_switch.c — a root event loop that lends its effective uid to another
 * user for a while (seteuid, as daemons do to open a user's files) and
 * takes root back.  Its main thread is a loop before the switch; a second
 * loop thread starts while the uid is lent.  Prints "ready" once both have
 * waited, with root back, then runs until a line arrives on stdin. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

static void waits(int n)
{
	struct epoll_event ev;
	int ep = epoll_create1(0);
	for (int i = 0; i < n; i++)
		epoll_wait(ep, &ev, 1, 1);
	close(ep);
}

static void *second_loop(void *arg)
{
	(void)arg;
	waits(5);
	return NULL;
}

int main(int argc, char **argv)
{
	uid_t lend = argc > 1 ? (uid_t)atoi(argv[1]) : 65534;
	waits(5);
	if (seteuid(lend) != 0)
		return 2;
	pthread_t th;
	pthread_create(&th, NULL, second_loop, NULL);
	pthread_join(th, NULL);
	if (seteuid(0) != 0)
		return 3;
	printf("ready\n");
	fflush(stdout);
	char line[16];
	if (!fgets(line, sizeof(line), stdin))
		line[0] = '\0';        /* EOF ends it too */
	waits(5);
	return 0;
}
