/* event_slow.c — a libevent loop with one slow callback.
 *
 * A persistent 5 ms timer (fast_tick_cb, event_assign on our own struct
 * event) ticks; after 10 ms slow_event_cb (event_new) burns 60 ms of CPU;
 * an event_base_once callback (slow_once_cb) burns 30 ms; a callback
 * registered with event_self_cbarg() checks it gets its own event.  The
 * program checks that what it reads back (event_get_callback, _arg,
 * event_get_assignment) is what it registered, and prints "readback ok",
 * "self ok", "ticks N". */
#define _GNU_SOURCE
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static struct event_base *base;
static struct event tick;
static struct event *slow, *self_ev;
static int ticks, self_ok, slow_done, once_done;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void burn_ms(int ms)
{
	uint64_t end = now_ns() + (uint64_t)ms * 1000000u;
	while (now_ns() < end)
		;
}

void fast_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (++ticks >= 10 && slow_done && once_done)
		event_del(&tick);
}

void slow_event_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	burn_ms(60);
	slow_done = 1;
}

void slow_once_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	burn_ms(30);
	once_done = 1;
}

void self_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	self_ok = arg == self_ev;
}

int main(void)
{
	int marker = 42;
	base = event_base_new();
	struct timeval ms5 = { 0, 5000 }, ms10 = { 0, 10000 }, ms20 = { 0, 20000 }, zero = { 0, 0 };

	event_assign(&tick, base, -1, EV_PERSIST, fast_tick_cb, &marker);
	event_add(&tick, &ms5);
	slow = event_new(base, -1, 0, slow_event_cb, &marker);
	event_add(slow, &ms10);
	event_base_once(base, -1, EV_TIMEOUT, slow_once_cb, NULL, &ms20);
	self_ev = event_new(base, -1, 0, self_cb, event_self_cbarg());
	event_add(self_ev, &zero);

	struct event_base *b;
	evutil_socket_t fd;
	short events;
	event_callback_fn cb;
	void *arg;
	event_get_assignment(&tick, &b, &fd, &events, &cb, &arg);
	if (event_get_callback(slow) == slow_event_cb && event_get_callback_arg(slow) == &marker &&
	    cb == fast_tick_cb && arg == &marker && b == base && fd == -1)
		printf("readback ok\n");

	event_base_dispatch(base);
	printf("self %s\n", self_ok ? "ok" : "wrong");
	printf("ticks %d\n", ticks);
	event_free(slow);
	event_free(self_ev);
	event_base_free(base);
	return 0;
}
