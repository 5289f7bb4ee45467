/* sigwait_loop.c — blocks SIGUSR1 in every thread, says how it sees the
 * dispositions of SIGUSR1 and SIGALRM, runs an epoll loop on a 10 ms
 * timerfd for a while, then sigwait()s for SIGUSR1 and exits 0: a signal
 * the program waits for must still reach it with the shim's handlers in
 * place (tests/test_faults.py). */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

static const char *shown(int sig)
{
	struct sigaction sa;
	sigaction(sig, NULL, &sa);
	return sa.sa_handler == SIG_DFL ? "default" : "other";
}

int main(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	int ep = epoll_create1(0);
	int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec its = { { 0, 10 * 1000000L }, { 0, 10 * 1000000L } };
	timerfd_settime(tfd, 0, &its, NULL);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = tfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	for (int i = 0; i < 5; i++) {
		uint64_t n;
		if (epoll_wait(ep, &ev, 1, -1) == 1 && read(tfd, &n, sizeof(n)) < 0)
			return 1;
	}
	printf("usr1=%s alrm=%s\nready\n", shown(SIGUSR1), shown(SIGALRM));
	fflush(stdout);
	int sig = 0;
	if (sigwait(&set, &sig) != 0)
		return 1;
	printf("got %d\n", sig);
	return 0;
}
