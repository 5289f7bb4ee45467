/* ctl_toggle N: an epoll loop that never sleeps (timeout 0) and asks the
 * shim, N times, to disable and enable recording (asyncshim ctl's signal,
 * sent to itself), then once more to enable while recording is on. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "../../preload/ctl_proto.h"

static void send_cmd(int cmd)
{
	union sigval v = { .sival_int = AS_CTL_MAGIC | cmd };
	sigqueue(getpid(), SIGRTMAX - AS_CTL_DEFAULT_SIGNAL_FROM_MAX, v);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 100;
	int ep = epoll_create1(0);
	struct epoll_event ev;
	for (int i = 0; i < n; i++) {
		send_cmd(i % 3 == 0 ? AS_CTL_DISABLE : AS_CTL_ENABLE);
		for (int k = 0; k < 2000; k++)
			epoll_wait(ep, &ev, 1, 0);
	}
	printf("%d\n", n);
	return 0;
}
