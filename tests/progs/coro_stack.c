/* coro_stack.c — a loop thread running a makecontext coroutine on a small
 * stack, as servers with thousands of coroutines do.
 *
 *   coro_stack STACK_BYTES USE_BYTES block MS   the coroutine takes USE_BYTES
 *       of its stack, then makes a blocking call (usleep MS)
 *   coro_stack STACK_BYTES USE_BYTES spin MS    ... then burns MS of CPU (a
 *       stall, which the shim samples with a signal)
 *   coro_stack STACK_BYTES USE_BYTES timer MS   spin, with an empty handler
 *       of its own on a 1 ms timer: the same signal frames, no shim
 *
 * The stack is mapped with a guard page below it, so an overflow dies of
 * SIGSEGV instead of writing over something else, and filled with a
 * pattern; afterwards the program prints how deep it was used:
 * "used BYTES". */
#define _GNU_SOURCE
#include <alloca.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define PATTERN 0xa5

static ucontext_t main_uc, coro_uc;
static size_t use;
static const char *mode;
static long ms;

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_timer(int sig)
{
	(void)sig;
}

__attribute__((noinline)) static void spin(void)
{
	volatile unsigned long x = 0;
	long end = now_ms() + ms;
	while (now_ms() < end)
		for (int i = 0; i < 10000; i++)
			x++;
}

/* USE bytes of this frame are live across the call */
__attribute__((noinline)) static void deep_work(void)
{
	char *p = alloca(use);
	memset(p, 1, use);
	if (!strcmp(mode, "block"))
		usleep((useconds_t)(ms * 1000));
	else
		spin();
	__asm__ volatile("" : : "r"(p) : "memory");
}

static void coro(void)
{
	deep_work();
}

int main(int argc, char **argv)
{
	if (argc != 5)
		return 2;
	size_t size = strtoul(argv[1], NULL, 0);
	use = strtoul(argv[2], NULL, 0);
	mode = argv[3];
	ms = atol(argv[4]);
	char *map = mmap(NULL, size + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED)
		return 2;
	mprotect(map, 4096, PROT_NONE);
	char *stack = map + 4096;
	memset(stack, PATTERN, size);
	/* bind the coroutine's calls now: lazy binding saves the whole vector
	 * state on the stack it runs on (2.5 KiB with AVX-512) */
	usleep(0);
	now_ms();
	if (!strcmp(mode, "timer")) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_timer;
		sigaction(SIGALRM, &sa, NULL);
		struct itimerval it = { { 0, 1000 }, { 0, 1000 } };
		setitimer(ITIMER_REAL, &it, NULL);
	}
	int ep = epoll_create1(0);
	struct epoll_event ev;
	epoll_wait(ep, &ev, 1, 0);      /* a loop thread, inside an iteration */
	getcontext(&coro_uc);
	coro_uc.uc_stack.ss_sp = stack;
	coro_uc.uc_stack.ss_size = size;
	coro_uc.uc_link = &main_uc;
	makecontext(&coro_uc, coro, 0);
	swapcontext(&main_uc, &coro_uc);
	if (!strcmp(mode, "timer")) {
		struct itimerval off = { { 0, 0 }, { 0, 0 } };
		setitimer(ITIMER_REAL, &off, NULL);
	}
	epoll_wait(ep, &ev, 1, 0);
	size_t low = 0;
	while (low < size && (unsigned char)stack[low] == PATTERN)
		low++;
	printf("used %zu\n", size - low);
	return 0;
}
