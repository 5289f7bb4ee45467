/* sample_signal.c MODE — a loop that uses the realtime signal the shim samples
 * stalls with (SIGRTMAX-4), to show the program keeps it:
 *   own      installs its own SA_SIGINFO handler, sends itself the signal once
 *            (tick 2), stalls 60 ms (tick 4), sleeps 50 ms with nanosleep
 *            (tick 6) and usleep (tick 8), and spins 30 ms doing 100 us
 *            nanosleeps (tick 9) inside iterations; prints what it saw: its
 *            handler ran exactly once, no sleep returned EINTR.
 *   default  sends itself the signal without a handler: dies of it.
 *   ignore   sets SIG_IGN, sends itself the signal: survives.
 *   fork     the loop runs in a fork child, which stalls 60 ms on tick 4. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t handled, value;

static void handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	handled++;
	value = si->si_value.sival_int;
}

__attribute__((noinline)) static void spin_ms(long ms)
{
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	do
		clock_gettime(CLOCK_MONOTONIC, &b);
	while ((b.tv_sec - a.tv_sec) * 1000L + (b.tv_nsec - a.tv_nsec) / 1000000L < ms);
}

/* A stall that keeps entering sleeps: the signal's likeliest victim. */
__attribute__((noinline)) static int sleepy_spin(long ms)
{
	struct timespec a, b, nap = { 0, 100 * 1000 };
	int eintr = 0;
	clock_gettime(CLOCK_MONOTONIC, &a);
	do {
		spin_ms(1);
		eintr += nanosleep(&nap, NULL) != 0 && errno == EINTR;
		clock_gettime(CLOCK_MONOTONIC, &b);
	} while ((b.tv_sec - a.tv_sec) * 1000L + (b.tv_nsec - a.tv_nsec) / 1000000L < ms);
	return eintr;
}

static int run_loop(const char *mode, int sig)
{
	int ep = epoll_create1(0), tfd = timerfd_create(CLOCK_MONOTONIC, 0), eintr = 0;
	struct itimerspec its = { { 0, 10 * 1000000L }, { 0, 10 * 1000000L } };
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = tfd };
	timerfd_settime(tfd, 0, &its, NULL);
	epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
	for (int tick = 1; tick <= 10;) {
		uint64_t n;
		if (epoll_wait(ep, &ev, 1, 1000) != 1 || read(tfd, &n, sizeof(n)) != sizeof(n))
			continue;
		if (tick == 2 && strcmp(mode, "fork")) {
			union sigval v = { .sival_int = 1234 };
			sigqueue(getpid(), sig, v);
		}
		if (tick == 4)
			spin_ms(60);
		if (tick == 6) {
			struct timespec ts = { 0, 50 * 1000000L };
			eintr += nanosleep(&ts, NULL) != 0 && errno == EINTR;
		}
		if (tick == 8)
			eintr += usleep(50 * 1000) != 0 && errno == EINTR;
		if (tick == 9)
			eintr += sleepy_spin(30);
		tick++;
	}
	return eintr;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "own";
	int sig = SIGRTMAX - 4;
	struct sigaction old, sa, cur;
	sigaction(sig, NULL, &old);
	printf("before=%s\n", old.sa_handler == SIG_DFL && !(old.sa_flags & SA_SIGINFO) ? "default" : "other");
	if (!strcmp(mode, "own")) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = handler;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
		sigemptyset(&sa.sa_mask);
		sigaction(sig, &sa, NULL);
		sigaction(sig, NULL, &cur);
		printf("query=%s\n", (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == handler ? "mine" : "other");
	} else if (!strcmp(mode, "ignore")) {
		signal(sig, SIG_IGN);
	} else if (!strcmp(mode, "fork")) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0)
			return run_loop(mode, sig) ? 3 : 0;
		int status;
		waitpid(pid, &status, 0);
		printf("child=%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		return 0;
	}
	int eintr = run_loop(mode, sig);
	printf("handled=%d value=%d eintr=%d\n", (int)handled, (int)value, eintr);
	return 0;
}
