/* uv_again.c — libuv handles restarted with the callback libuv holds.
 *
 * uv_again MODE, MODE one of:
 *   timer    a repeating timer (libuv restarts it with uv_timer_again after
 *            each run), an explicit uv_timer_again, and a repeating timer
 *            whose second run (slow_repeat_cb) sleeps 60 ms
 *   idle, check, prepare, poll, read, listen
 *            the callback stops its handle and starts it again with the
 *            callback the handle holds (h->idle_cb, h->read_cb, ...)
 * Prints "MODE N" (how many times the callbacks ran) and exits 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define RUNS 3

static uv_loop_t *loop;
static int runs;

static void closed(uv_handle_t *h)
{
	(void)h;
}

/* ---- timer ---- */
static uv_timer_t rep, slow;
static int slow_runs;

void rep_cb(uv_timer_t *h)
{
	runs++;
	if (runs == 2)
		uv_timer_again(h);      /* the program's own restart */
	if (runs == 5)
		uv_close((uv_handle_t *)h, closed);
}

void slow_repeat_cb(uv_timer_t *h)
{
	if (++slow_runs == 2) {
		usleep(60 * 1000);
		uv_close((uv_handle_t *)h, closed);
	}
}

static void run_timer(void)
{
	uv_timer_init(loop, &rep);
	uv_timer_start(&rep, rep_cb, 1, 1);
	uv_timer_init(loop, &slow);
	uv_timer_start(&slow, slow_repeat_cb, 1, 1);
}

/* ---- idle, check, prepare: stop, then start with the held callback ---- */

/* An idle handle keeps the loop from blocking in its poll (check and
 * prepare callbacks run around it) until the callbacks have run. */
static uv_idle_t spinner;

void spin_cb(uv_idle_t *h)
{
	if (runs >= RUNS)
		uv_close((uv_handle_t *)h, closed);
}

#define RESTARTING(type)                                                  \
	static uv_##type##_t type##_h;                                    \
	void type##_cb(uv_##type##_t *h)                                  \
	{                                                                 \
		uv_##type##_stop(h);                                      \
		if (++runs < RUNS)                                        \
			uv_##type##_start(h, h->type##_cb);               \
		else                                                      \
			uv_close((uv_handle_t *)h, closed);               \
	}                                                                 \
	static void run_##type(void)                                      \
	{                                                                 \
		uv_##type##_init(loop, &type##_h);                        \
		uv_##type##_start(&type##_h, type##_cb);                  \
		uv_idle_init(loop, &spinner);                             \
		uv_idle_start(&spinner, spin_cb);                         \
	}

RESTARTING(idle)
RESTARTING(check)
RESTARTING(prepare)

/* ---- poll: a writable socket ---- */
static uv_poll_t poll_h;
static int pair[2];

void poll_cb(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	uv_poll_stop(h);
	if (++runs < RUNS)
		uv_poll_start(h, UV_WRITABLE, h->poll_cb);
	else
		uv_close((uv_handle_t *)h, closed);
}

static void run_poll(void)
{
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0)
		exit(1);
	uv_poll_init(loop, &poll_h, pair[0]);
	uv_poll_start(&poll_h, UV_WRITABLE, poll_cb);
}

/* ---- read: one byte at a time from a socket pair ---- */
static uv_pipe_t pipe_h;
static char read_buf[1];

static void alloc_one(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	(void)h;
	(void)size;
	*buf = uv_buf_init(read_buf, sizeof(read_buf));
}

void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	(void)buf;
	if (nread == 0)
		return;
	uv_alloc_cb alloc = s->alloc_cb;        /* uv_read_stop clears them */
	uv_read_cb cb = s->read_cb;
	uv_read_stop(s);
	if (nread > 0 && ++runs < RUNS)
		uv_read_start(s, alloc, cb);
	else
		uv_close((uv_handle_t *)s, closed);
}

static void run_read(void)
{
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0 || write(pair[1], "abc", 3) != 3)
		exit(1);
	uv_pipe_init(loop, &pipe_h, 0);
	uv_pipe_open(&pipe_h, pair[0]);
	uv_read_start((uv_stream_t *)&pipe_h, alloc_one, read_cb);
}

/* ---- listen: each connection, listen again with the held callback ---- */
static uv_tcp_t server;
static uv_tcp_t clients[RUNS];

void connection_cb(uv_stream_t *s, int status)
{
	if (status != 0)
		exit(1);
	uv_tcp_init(loop, &clients[runs]);
	if (uv_accept(s, (uv_stream_t *)&clients[runs]) != 0)
		exit(1);
	uv_close((uv_handle_t *)&clients[runs], closed);
	if (++runs < RUNS)
		uv_listen(s, 8, s->connection_cb);
	else
		uv_close((uv_handle_t *)s, closed);
}

static void run_listen(void)
{
	struct sockaddr_in a;
	int len = sizeof(a);
	uv_ip4_addr("127.0.0.1", 0, &a);
	uv_tcp_init(loop, &server);
	uv_tcp_bind(&server, (const struct sockaddr *)&a, 0);
	uv_listen((uv_stream_t *)&server, 8, connection_cb);
	uv_tcp_getsockname(&server, (struct sockaddr *)&a, &len);
	for (int i = 0; i < RUNS; i++) {        /* the backlog holds them */
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
			exit(1);
	}
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*run)(void);
	} modes[] = {
		{ "timer", run_timer }, { "idle", run_idle }, { "check", run_check },
		{ "prepare", run_prepare }, { "poll", run_poll }, { "read", run_read },
		{ "listen", run_listen },
	};
	loop = uv_default_loop();
	for (size_t i = 0; argc == 2 && i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(argv[1], modes[i].name) == 0) {
			modes[i].run();
			uv_run(loop, UV_RUN_DEFAULT);
			printf("%s %d\n", argv[1], runs);
			return 0;
		}
	}
	fprintf(stderr, "usage: uv_again timer|idle|check|prepare|poll|read|listen\n");
	return 2;
}
