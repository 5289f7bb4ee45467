/* span_coro.c — spans in ucontext coroutines, suspended across switches.
 *
 * An epoll loop thread keeps a span "sched" open while it runs three
 * coroutines round-robin.  Coroutine i opens "co-i", yields, opens
 * "inner-i", yields, (coroutine 1 then blocks in usleep inside inner-1),
 * closes both, yields once more and opens a last "tail-i".  Every span a
 * coroutine begins must nest in that coroutine's own spans — never in
 * "sched" nor in another coroutine's. */
#include <asyncshim.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <ucontext.h>
#include <unistd.h>

#define NCO 3
#define STACK (64 * 1024)

static ucontext_t sched, ctx[NCO];
static int done[NCO];
static char names[NCO][3][16];

static void yield(int i)
{
	swapcontext(&ctx[i], &sched);
}

static void coro(int i)
{
	asyncshim_span_begin(names[i][0]);
	yield(i);
	asyncshim_span_begin(names[i][1]);
	asyncshim_span_set_int("coroutine", i);
	yield(i);
	if (i == 1)
		usleep(20000);          /* a blocking call inside inner-1 */
	asyncshim_span_end();
	asyncshim_span_end();
	yield(i);
	{
		ASYNCSHIM_SPAN(names[i][2]);
		yield(i);
	}
	done[i] = 1;
}

int main(void)
{
	int ep = epoll_create1(0);
	struct epoll_event ev;
	epoll_wait(ep, &ev, 1, 0);      /* a loop thread from here */
	asyncshim_span_begin("sched");
	for (int i = 0; i < NCO; i++) {
		snprintf(names[i][0], sizeof(names[i][0]), "co-%d", i);
		snprintf(names[i][1], sizeof(names[i][1]), "inner-%d", i);
		snprintf(names[i][2], sizeof(names[i][2]), "tail-%d", i);
		getcontext(&ctx[i]);
		ctx[i].uc_stack.ss_sp = malloc(STACK);
		ctx[i].uc_stack.ss_size = STACK;
		ctx[i].uc_link = &sched;
		makecontext(&ctx[i], (void (*)(void))coro, 1, i);
	}
	for (int left = NCO; left;) {
		left = 0;
		for (int i = 0; i < NCO; i++) {
			if (done[i])
				continue;
			swapcontext(&sched, &ctx[i]);
			left += !done[i];
		}
	}
	asyncshim_span_end();
	epoll_wait(ep, &ev, 1, 0);
	printf("coroutines done\n");
	return 0;
}
