/* coro_tasks.c — ucontext coroutines under a round-robin scheduler.
 *
 *   coro_tasks rr     40 coroutines (coro_worker), each runs 1 ms of CPU,
 *                     suspends, 3 times, then runs 1 ms more and returns.
 *                     Prints one line per coroutine: "wait <index> <ns>",
 *                     the time it spent suspended as it measured it.
 *   coro_tasks tree   2 root coroutines (coro_level1) each spawn 2
 *                     coro_level2, each of which spawns 2 coro_level3:
 *                     3 levels, 14 tasks.  Every coroutine suspends once.
 *
 * Coroutines return through uc_link to the scheduler context. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#define MAX_CO 64
#define STACK (64 * 1024)

struct co {
	ucontext_t ctx;
	char *stack;
	int done;
	uint64_t waited_ns;
};

static struct co cos[MAX_CO];
static int nco, current = -1;
static ucontext_t sched;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void spin_ms(int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000u;
	while (now_ns() < end)
		;
}

static void yield(void)
{
	struct co *c = &cos[current];
	uint64_t t0 = now_ns();
	swapcontext(&c->ctx, &sched);
	c->waited_ns += now_ns() - t0;
}

static int spawn(void (*fn)(int))
{
	int i = nco++;
	struct co *c = &cos[i];
	c->stack = malloc(STACK);
	getcontext(&c->ctx);
	c->ctx.uc_stack.ss_sp = c->stack;
	c->ctx.uc_stack.ss_size = STACK;
	c->ctx.uc_link = &sched;
	makecontext(&c->ctx, (void (*)(void))fn, 1, i);
	return i;
}

void coro_worker(int self)
{
	for (int k = 0; k < 3; k++) {
		spin_ms(1);
		yield();
	}
	spin_ms(1);
	cos[self].done = 1;
}

void coro_level3(int self)
{
	yield();
	cos[self].done = 1;
}

void coro_level2(int self)
{
	spawn(coro_level3);
	spawn(coro_level3);
	yield();
	cos[self].done = 1;
}

void coro_level1(int self)
{
	spawn(coro_level2);
	spawn(coro_level2);
	yield();
	cos[self].done = 1;
}

/* Round robin over every coroutine not done, until all are. */
static void run_all(void)
{
	for (int busy = 1; busy;) {
		busy = 0;
		for (int i = 0; i < nco; i++) {
			if (cos[i].done)
				continue;
			busy = 1;
			current = i;
			swapcontext(&sched, &cos[i].ctx);
			current = -1;
		}
	}
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "rr";
	if (!strcmp(mode, "rr")) {
		for (int i = 0; i < 40; i++)
			spawn(coro_worker);
	} else if (!strcmp(mode, "tree")) {
		spawn(coro_level1);
		spawn(coro_level1);
	} else {
		fprintf(stderr, "usage: coro_tasks rr|tree\n");
		return 2;
	}
	run_all();
	for (int i = 0; i < nco; i++) {
		printf("wait %d %llu\n", i, (unsigned long long)cos[i].waited_ns);
		free(cos[i].stack);
	}
	return 0;
}
