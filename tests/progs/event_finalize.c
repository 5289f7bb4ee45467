/* event_finalize.c — what libevent hands back besides the callback call.
 *
 * event_finalize MODE, MODE one of:
 *   bufferevent  two bufferevents on a socket pair: one writes "hello", the
 *                other's read callback reads it and frees both (bufferevent_free
 *                finalizes their events); prints "read hello", "freed"
 *   finalize     event_finalize and event_free_finalize, from outside any
 *                callback and from inside the event's own callback; each
 *                finalizer checks it gets the event and its argument; prints
 *                "finalized N" (N finalizers ran with the right values)
 *   readback     event_get_callback, event_get_callback_arg,
 *                event_get_assignment and an event_self_cbarg() event, read
 *                back, run, and freed with event_free_finalize (whose
 *                finalizer gets the argument too); prints "readback ok",
 *                "self ok", "ran N"
 * Exits 0 when everything was as registered, 1 otherwise. */
#define _GNU_SOURCE
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static struct event_base *base;
static int failed;

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "wrong: %s\n", what);
		failed = 1;
	}
}

/* ---- bufferevent ---- */
static struct bufferevent *writer, *reader;

void reader_read_cb(struct bufferevent *bev, void *arg)
{
	char buf[16] = { 0 };
	check(arg == &reader, "bufferevent read callback argument");
	size_t n = bufferevent_read(bev, buf, sizeof(buf) - 1);
	if (n < 5)
		return;
	printf("read %s\n", buf);
	bufferevent_free(reader);
	bufferevent_free(writer);
	printf("freed\n");
}

static void run_bufferevent(void)
{
	int pair[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0)
		return check(0, "socketpair");
	writer = bufferevent_socket_new(base, pair[0], BEV_OPT_CLOSE_ON_FREE);
	reader = bufferevent_socket_new(base, pair[1], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(reader, reader_read_cb, NULL, NULL, &reader);
	bufferevent_enable(reader, EV_READ);
	bufferevent_write(writer, "hello", 5);
	event_base_dispatch(base);
}

/* ---- finalize ---- */
static int finalized;
static int arg_a, arg_b, arg_c, arg_d;
static struct event embedded, *own_free;

void never_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	check(0, "a finalized event's callback ran");
}

void finalizer(struct event *ev, void *arg)
{
	int ok = (ev == &embedded && arg == &arg_a) || (arg == &arg_b) || (ev == own_free && arg == &arg_c) ||
		 arg == &arg_d;
	check(ok, "finalizer's event or argument");
	finalized += ok;
}

/* Finalizes its own event from inside its callback (libevent's regress
 * "within_cb"). */
void own_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	check(arg == &arg_c, "callback argument");
	event_free_finalize(0, own_free, finalizer);
}

static void run_finalize(void)
{
	struct timeval ms1 = { 0, 1000 };
	event_assign(&embedded, base, -1, 0, never_cb, &arg_a);
	event_add(&embedded, &ms1);
	event_finalize(0, &embedded, finalizer);
	struct event *b = event_new(base, -1, 0, never_cb, &arg_b);
	event_add(b, &ms1);
	event_free_finalize(0, b, finalizer);
	own_free = event_new(base, -1, 0, own_cb, &arg_c);
	event_add(own_free, &ms1);
	struct event *d = event_new(base, -1, EV_PERSIST, never_cb, &arg_d);
	event_finalize(0, d, finalizer);        /* never added */
	event_base_dispatch(base);
	event_free(d);
	printf("finalized %d\n", finalized);
}

/* ---- readback ---- */
static struct event *self_ev, *plain;
static int ran, marker;

void self_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	check(arg == self_ev, "event_self_cbarg callback argument");
	check(event_get_callback_arg(self_ev) == self_ev, "event_get_callback_arg inside the callback");
	ran++;
}

void readback_finalizer(struct event *ev, void *arg)
{
	check((ev == self_ev && arg == self_ev) || (ev == plain && arg == &marker), "finalizer's argument");
	ran++;
}

void plain_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	check(fd == -1 && arg == &marker, "callback fd or argument");
	ran++;
}

static void run_readback(void)
{
	self_ev = event_new(base, -1, 0, self_cb, event_self_cbarg());
	plain = event_new(base, -1, 0, plain_cb, &marker);
	struct event_base *b_out = NULL;
	evutil_socket_t fd_out = 0;
	short what_out = 0;
	event_callback_fn cb_out = NULL;
	void *arg_out = NULL;
	event_get_assignment(plain, &b_out, &fd_out, &what_out, &cb_out, &arg_out);
	int ok = event_get_callback(plain) == plain_cb && event_get_callback_arg(plain) == &marker &&
		 b_out == base && fd_out == -1 && cb_out == plain_cb && arg_out == &marker;
	check(ok, "read back");
	printf("readback %s\n", ok ? "ok" : "wrong");
	ok = event_get_callback(self_ev) == self_cb && event_get_callback_arg(self_ev) == self_ev;
	check(ok, "event_self_cbarg read back");
	printf("self %s\n", ok ? "ok" : "wrong");
	event_active(self_ev, EV_TIMEOUT, 0);
	event_active(plain, EV_TIMEOUT, 0);
	event_base_dispatch(base);
	event_free_finalize(0, self_ev, readback_finalizer);
	event_free_finalize(0, plain, readback_finalizer);
	event_base_dispatch(base);
	printf("ran %d\n", ran);
}

int main(int argc, char **argv)
{
	base = event_base_new();
	if (argc == 2 && strcmp(argv[1], "bufferevent") == 0)
		run_bufferevent();
	else if (argc == 2 && strcmp(argv[1], "finalize") == 0)
		run_finalize();
	else if (argc == 2 && strcmp(argv[1], "readback") == 0)
		run_readback();
	else {
		fprintf(stderr, "usage: event_finalize bufferevent|finalize|readback\n");
		return 2;
	}
	event_base_free(base);
	return failed;
}
