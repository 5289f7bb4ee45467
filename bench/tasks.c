/* tasks.c — what the shim adds to a coroutine switch and to a loop callback.
 *
 *   tasks [ROUNDS]
 *
 * Same method as bench/calls.c: inside one process, blocks of operations go
 * alternately (ABBA) through "direct" function pointers, the library's own
 * functions (dlopen(..., RTLD_NOLOAD) + dlsym), and "hooked" ones, what the
 * program itself would call (dlsym(RTLD_DEFAULT)): the shim's when it is
 * preloaded.  Blocks are timed with the thread's CPU clock; the figure is
 * the median over block pairs of (hooked - direct) per operation, so a bare
 * run measures ~0.
 *
 *   switch      one swapcontext round trip between the main context and a
 *               coroutine made with makecontext (under the shim: a task, so
 *               each round trip is one task suspension + one resumption)
 *   event_cb    one libevent callback (an event that re-activates itself
 *               with event_active), registered with event_assign
 *   uv_idle_cb  one libuv idle callback (one loop iteration each), registered
 *               with uv_idle_start
 *
 * Prints one line per row:  ROW name diff_ns hooked_ns direct_ns blocks */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>
#include <uv.h>

#define BLOCKS 200

static double cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *lib_fn(const char *lib, const char *name)
{
	void *h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
	void *p = h ? dlsym(h, name) : NULL;
	if (!p) {
		fprintf(stderr, "tasks: no %s in %s\n", name, lib);
		exit(1);
	}
	return p;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Run BLOCKS blocks in ABBA order; block(mode, n) returns ns per operation. */
static void measure(const char *name, double (*block)(int hooked, long n), long n)
{
	double diff[BLOCKS / 2], hooked_sum = 0, direct_sum = 0;
	block(0, n / 10);       /* warm up both */
	block(1, n / 10);
	for (int i = 0; i < BLOCKS / 2; i++) {
		double d, h;
		if (i % 2) {
			h = block(1, n);
			d = block(0, n);
		} else {
			d = block(0, n);
			h = block(1, n);
		}
		diff[i] = h - d;
		hooked_sum += h;
		direct_sum += d;
	}
	qsort(diff, BLOCKS / 2, sizeof(diff[0]), cmp_double);
	printf("ROW %s %.1f %.1f %.1f %d\n", name, diff[BLOCKS / 4], hooked_sum / (BLOCKS / 2),
	       direct_sum / (BLOCKS / 2), BLOCKS);
	fflush(stdout);
}

/* ---- swapcontext ---- */

typedef int (*swap_fn)(ucontext_t *, const ucontext_t *);
static swap_fn swap_direct, swap_hooked, swap_now;
static ucontext_t main_ctx, co_ctx;
static char co_stack[256 * 1024];

static void co_body(void)
{
	for (;;)
		swap_now(&co_ctx, &main_ctx);
}

static double block_switch(int hooked, long n)
{
	swap_fn fn = hooked ? swap_hooked : swap_direct;
	swap_now = fn;
	double t0 = cpu_ns();
	for (long i = 0; i < n; i++)
		fn(&main_ctx, &co_ctx);
	return (cpu_ns() - t0) / (double)n;
}

/* ---- libevent ---- */

typedef int (*assign_fn)(struct event *, struct event_base *, evutil_socket_t, short, event_callback_fn, void *);
static struct event_base *base;
static struct event ev_direct, ev_hooked;
static long ev_left;

static void ev_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	if (--ev_left > 0)
		event_active(arg, EV_READ, 0);
}

static double block_event(int hooked, long n)
{
	struct event *ev = hooked ? &ev_hooked : &ev_direct;
	ev_left = n;
	double t0 = cpu_ns();
	event_active(ev, EV_READ, 0);
	event_base_loop(base, 0);
	return (cpu_ns() - t0) / (double)n;
}

/* ---- libuv ---- */

typedef int (*idle_start_fn)(uv_idle_t *, uv_idle_cb);
static idle_start_fn idle_direct, idle_hooked;
static uv_loop_t *loop;
static uv_idle_t idle;
static long idle_left;

static void idle_cb(uv_idle_t *h)
{
	if (--idle_left <= 0)
		uv_idle_stop(h);
}

static double block_idle(int hooked, long n)
{
	idle_left = n;
	(hooked ? idle_hooked : idle_direct)(&idle, idle_cb);
	double t0 = cpu_ns();
	uv_run(loop, UV_RUN_DEFAULT);
	return (cpu_ns() - t0) / (double)n;
}

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 20000;

	swap_direct = (swap_fn)lib_fn("libc.so.6", "swapcontext");
	swap_hooked = (swap_fn)dlsym(RTLD_DEFAULT, "swapcontext");
	getcontext(&co_ctx);
	co_ctx.uc_stack.ss_sp = co_stack;
	co_ctx.uc_stack.ss_size = sizeof(co_stack);
	co_ctx.uc_link = &main_ctx;
	makecontext(&co_ctx, co_body, 0);
	measure("switch", block_switch, rounds);

	base = event_base_new();
	assign_fn assign_direct = (assign_fn)lib_fn("libevent-2.1.so.7", "event_assign");
	assign_fn assign_hooked = (assign_fn)dlsym(RTLD_DEFAULT, "event_assign");
	assign_direct(&ev_direct, base, -1, 0, ev_cb, &ev_direct);
	assign_hooked(&ev_hooked, base, -1, 0, ev_cb, &ev_hooked);
	measure("event_cb", block_event, rounds * 5);
	event_base_free(base);

	loop = uv_default_loop();
	idle_direct = (idle_start_fn)lib_fn("libuv.so.1", "uv_idle_start");
	idle_hooked = (idle_start_fn)dlsym(RTLD_DEFAULT, "uv_idle_start");
	uv_idle_init(loop, &idle);
	measure("uv_idle_cb", block_idle, rounds);
	uv_close((uv_handle_t *)&idle, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	return 0;
}
