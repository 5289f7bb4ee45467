/* libuv.c — uv_run, loop callbacks, and uv_queue_work as tasks.
 *
 * libuv is never linked: these are our own prototypes with opaque pointers
 * (the ABI of libuv 1.x), and the real functions are found at first use.
 *
 * - uv_run marks the thread a loop thread (see preload/task.c).
 * - Loop callbacks (timer, idle, check, prepare, async, poll, read, listen)
 *   are timed: the handle gets a trampoline, the program's callback is kept
 *   in the wrapper table keyed by the handle, until uv_close.  A callback
 *   that runs >= block_ms is recorded with its function.
 * - uv_queue_work creates a task: queued here (on the loop), run on a pool
 *   thread (trampoline around work_cb: queue delay and run time), ended by
 *   the after-work trampoline (status UV_ECANCELED: cancelled) or by a
 *   successful uv_cancel. */
#include "task.h"

#include <sys/types.h>

#define UV_RUN_DEFAULT 0
#define UV_ECANCELED (-125)
#define UV_ENOSYS (-38)

typedef void (*handle_cb)(void *);
typedef void (*poll_cb)(void *, int, int);
typedef void (*read_cb)(void *, ssize_t, const void *);
typedef void (*connection_cb)(void *, int);
typedef void (*work_cb)(void *);
typedef void (*after_work_cb)(void *, int);

AS_REAL(int, uv_run, (void *, int));
AS_REAL(int, uv_timer_start, (void *, handle_cb, uint64_t, uint64_t));
AS_REAL(int, uv_idle_start, (void *, handle_cb));
AS_REAL(int, uv_check_start, (void *, handle_cb));
AS_REAL(int, uv_prepare_start, (void *, handle_cb));
AS_REAL(int, uv_async_init, (void *, void *, handle_cb));
AS_REAL(int, uv_poll_start, (void *, int, poll_cb));
AS_REAL(int, uv_read_start, (void *, void *, read_cb));
AS_REAL(int, uv_listen, (void *, int, connection_cb));
AS_REAL(int, uv_queue_work, (void *, void *, work_cb, after_work_cb));
AS_REAL(int, uv_cancel, (void *));
AS_REAL(void, uv_close, (void *, void *));

/* 1 while every function we resolved is libuv's; a same-named function of
 * another library makes us stop wrapping (its callbacks mean other things). */
static int is_libuv = 1;

#define UV_RESOLVE(name)                                                         \
	do {                                                                     \
		if (AS_UNLIKELY(!real_##name)) {                                 \
			real_##name = as_resolve_lib(#name);                     \
			if (real_##name && !as_lib_is((void *)real_##name, "libuv")) \
				CMM_STORE_SHARED(is_libuv, 0);                   \
		}                                                                \
	} while (0)

enum { SLOT_MAIN = 0, SLOT_READ = 1 };

/* The program's callback for handle h in slot; NULL only if the wrapper
 * vanished, which uv_close ordering rules out. */
static void *handle_callback(void *h, int slot)
{
	struct as_wrap *w = as_wrap_find(h, AS_WRAP_UV_HANDLE);
	return w ? CMM_LOAD_SHARED(w->cb[slot]) : NULL;
}

/* Register cb for handle h; returns the callback to give libuv.  libuv
 * restarts handles with the callback it holds (uv_timer_again calls
 * uv_timer_start with it), which is already our trampoline: the program's
 * callback stays as it was, else the trampoline would call itself. */
static void *wrap_handle(void *h, int slot, void *cb, void *tramp)
{
	if (!cb || cb == tramp || !CMM_LOAD_SHARED(is_libuv))
		return cb;
	struct as_wrap *w = as_wrap_add(h, AS_WRAP_UV_HANDLE);
	if (!w)
		return cb;
	CMM_STORE_SHARED(w->cb[slot], cb);
	return tramp;
}

#define HANDLE_TRAMPOLINE(name, source)                                  \
	static void tramp_##name(void *h)                                \
	{                                                                \
		handle_cb cb = (handle_cb)handle_callback(h, SLOT_MAIN); \
		if (cb)                                                  \
			AS_TIMED_CALLBACK(source, cb, cb(h));            \
	}

HANDLE_TRAMPOLINE(timer, AS_CB_UV_TIMER)
HANDLE_TRAMPOLINE(idle, AS_CB_UV_IDLE)
HANDLE_TRAMPOLINE(check, AS_CB_UV_CHECK)
HANDLE_TRAMPOLINE(prepare, AS_CB_UV_PREPARE)
HANDLE_TRAMPOLINE(async, AS_CB_UV_ASYNC)

static void tramp_poll(void *h, int status, int events)
{
	poll_cb cb = (poll_cb)handle_callback(h, SLOT_MAIN);
	if (cb)
		AS_TIMED_CALLBACK(AS_CB_UV_POLL, cb, cb(h, status, events));
}

static void tramp_read(void *h, ssize_t nread, const void *buf)
{
	read_cb cb = (read_cb)handle_callback(h, SLOT_READ);
	if (cb)
		AS_TIMED_CALLBACK(AS_CB_UV_READ, cb, cb(h, nread, buf));
}

static void tramp_listen(void *h, int status)
{
	connection_cb cb = (connection_cb)handle_callback(h, SLOT_MAIN);
	if (cb)
		AS_TIMED_CALLBACK(AS_CB_UV_LISTEN, cb, cb(h, status));
}

AS_EXPORT int uv_run(void *loop, int mode)
{
	UV_RESOLVE(uv_run);
	if (!real_uv_run)
		return UV_ENOSYS;
	as_loop_enter();
	int r = real_uv_run(loop, mode);
	as_loop_leave(mode == UV_RUN_DEFAULT);
	return r;
}

AS_EXPORT int uv_timer_start(void *h, handle_cb cb, uint64_t timeout, uint64_t repeat)
{
	UV_RESOLVE(uv_timer_start);
	if (!real_uv_timer_start)
		return UV_ENOSYS;
	return real_uv_timer_start(h, (handle_cb)wrap_handle(h, SLOT_MAIN, (void *)cb, (void *)tramp_timer),
				   timeout, repeat);
}

#define HANDLE_START(name, fn)                                                                 \
	AS_EXPORT int uv_##name##_start(void *h, handle_cb cb)                                  \
	{                                                                                      \
		UV_RESOLVE(uv_##name##_start);                                                 \
		if (!real_uv_##name##_start)                                                   \
			return UV_ENOSYS;                                                      \
		return real_uv_##name##_start(h, (handle_cb)wrap_handle(h, SLOT_MAIN, (void *)cb, \
									(void *)fn));          \
	}

HANDLE_START(idle, tramp_idle)
HANDLE_START(check, tramp_check)
HANDLE_START(prepare, tramp_prepare)

AS_EXPORT int uv_async_init(void *loop, void *h, handle_cb cb)
{
	UV_RESOLVE(uv_async_init);
	if (!real_uv_async_init)
		return UV_ENOSYS;
	return real_uv_async_init(loop, h, (handle_cb)wrap_handle(h, SLOT_MAIN, (void *)cb, (void *)tramp_async));
}

AS_EXPORT int uv_poll_start(void *h, int events, poll_cb cb)
{
	UV_RESOLVE(uv_poll_start);
	if (!real_uv_poll_start)
		return UV_ENOSYS;
	return real_uv_poll_start(h, events, (poll_cb)wrap_handle(h, SLOT_MAIN, (void *)cb, (void *)tramp_poll));
}

AS_EXPORT int uv_read_start(void *h, void *alloc_cb, read_cb cb)
{
	UV_RESOLVE(uv_read_start);
	if (!real_uv_read_start)
		return UV_ENOSYS;
	return real_uv_read_start(h, alloc_cb, (read_cb)wrap_handle(h, SLOT_READ, (void *)cb, (void *)tramp_read));
}

AS_EXPORT int uv_listen(void *h, int backlog, connection_cb cb)
{
	UV_RESOLVE(uv_listen);
	if (!real_uv_listen)
		return UV_ENOSYS;
	return real_uv_listen(h, backlog, (connection_cb)wrap_handle(h, SLOT_MAIN, (void *)cb, (void *)tramp_listen));
}

/* After uv_close no callback of the handle runs but close_cb (not wrapped). */
AS_EXPORT void uv_close(void *h, void *close_cb)
{
	UV_RESOLVE(uv_close);
	if (!real_uv_close)
		return;
	real_uv_close(h, close_cb);
	struct as_wrap *w = as_wrap_find(h, AS_WRAP_UV_HANDLE);
	if (w)
		as_wrap_del(w);
}

/* ---- thread-pool work ---- */

/* On a pool thread. */
static void tramp_work(void *req)
{
	struct as_wrap *w = as_wrap_find(req, AS_WRAP_UV_WORK);
	if (!w)
		return;
	work_cb cb = (work_cb)w->cb[0];
	struct as_task *prev = as_task_cur;
	as_task_cur = &w->task;
	w->task.run_start = as_now();
	cb(req);
	as_task_run(&w->task, AS_RUN_FINISHED);
	as_task_cur = prev;
}

/* On the loop thread. */
static void tramp_after_work(void *req, int status)
{
	struct as_wrap *w = as_wrap_find(req, AS_WRAP_UV_WORK);
	if (!w)
		return;
	after_work_cb cb = (after_work_cb)w->cb[1];
	struct as_task task = w->task;
	int ended = w->ended;
	as_wrap_del(w);         /* first: the callback may queue the same request again */
	struct as_task *prev = as_task_cur;
	as_task_cur = &task;    /* work queued from here is this task's child */
	if (cb)
		AS_TIMED_CALLBACK(AS_CB_UV_AFTER_WORK, cb, cb(req, status));
	as_task_cur = prev;
	if (!ended)
		as_task_end(task.id, status == UV_ECANCELED ? AS_TASK_CANCELLED
				     : status < 0           ? AS_TASK_FAILED
							    : AS_TASK_COMPLETED);
}

AS_EXPORT int uv_queue_work(void *loop, void *req, work_cb work, after_work_cb after)
{
	UV_RESOLVE(uv_queue_work);
	if (!real_uv_queue_work)
		return UV_ENOSYS;
	struct as_wrap *w = work && CMM_LOAD_SHARED(is_libuv) ? as_wrap_add(req, AS_WRAP_UV_WORK) : NULL;
	if (!w)
		return real_uv_queue_work(loop, req, work, after);
	w->cb[0] = (void *)work;
	w->cb[1] = (void *)after;
	w->ended = 0;
	w->task.run_start = 0;
	w->task.spans = NULL;
	w->task.id = as_task_new(AS_TASK_UV_WORK, (const void *)work);
	int r = real_uv_queue_work(loop, req, tramp_work, tramp_after_work);
	if (r != 0) {
		as_task_end(w->task.id, AS_TASK_FAILED);
		as_wrap_del(w);
	}
	return r;
}

AS_EXPORT int uv_cancel(void *req)
{
	UV_RESOLVE(uv_cancel);
	if (!real_uv_cancel)
		return UV_ENOSYS;
	struct as_wrap *w = as_wrap_find(req, AS_WRAP_UV_WORK);
	int r = real_uv_cancel(req);
	if (r == 0 && w && !w->ended) {
		w->ended = 1;
		as_task_end(w->task.id, AS_TASK_CANCELLED);
	}
	return r;
}
