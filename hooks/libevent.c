/* libevent.c — event_base_loop, and callbacks registered with event_assign,
 * event_new, event_set and event_base_once, timed.
 *
 * libevent is never linked: own prototypes with opaque pointers (the ABI of
 * libevent 2.1), real functions found at first use.
 *
 * libevent 2.1 has no hook around callbacks (evwatch came with 2.2) and
 * calls them from inside event_base_loop, so they are timed from their
 * registration: the event's callback is replaced by a trampoline, and the
 * program's callback kept in a wrapper keyed by the struct event's address.
 * The event keeps the program's own argument: libevent hands it to more
 * than the callback (event_finalize's and bufferevents' finalizers,
 * event_get_callback_arg), so it must stay the program's.  The trampoline
 * gets only (fd, what, arg); it finds its event with
 * event_base_get_running_event on the base this thread's innermost
 * event_base_loop runs (every event callback runs inside one).
 *
 * A struct event reassigned over and over (memcached does it on every
 * state change) reuses its wrapper, and event_free frees it.  A struct
 * event freed without event_free (one the program embeds in its own
 * memory, a bufferevent's, one freed by event_free_finalize) leaves its
 * wrapper behind until that address holds an event again, so their number
 * is bounded by the addresses ever used for events (and capped).  Their
 * wrappers are not dropped at event_finalize: a callback of the event may
 * still be on its way on another thread, and must find its wrapper.
 * event_get_callback and event_get_assignment return the program's
 * callback; a program calling the callback stored in a struct event itself
 * would call the trampoline outside libevent's dispatch: it is not called
 * then (warned once).
 *
 * libevent's own internal callbacks (bufferevents', common timeouts') are
 * wrapped too when libevent calls event_assign through its PLT (Debian's
 * does); a slow callback is reported once, for the innermost function. */
#include "task.h"

#include <urcu/uatomic.h>

typedef void (*event_cb)(int, short, void *);

AS_REAL(int, event_assign, (void *, void *, int, short, event_cb, void *));
AS_REAL(void *, event_new, (void *, int, short, event_cb, void *));
AS_REAL(void, event_set, (void *, int, short, event_cb, void *));
AS_REAL(void, event_free, (void *));
AS_REAL(int, event_base_once, (void *, int, short, event_cb, void *, const void *));
AS_REAL(int, event_base_loop, (void *, int));
AS_REAL(int, event_base_dispatch, (void *));
AS_REAL(event_cb, event_get_callback, (const void *));
AS_REAL(void *, event_get_callback_arg, (const void *));
AS_REAL(void, event_get_assignment, (const void *, void **, int *, short *, event_cb *, void **));
AS_REAL(void *, event_get_base, (const void *));
AS_REAL(void *, event_base_get_running_event, (void *));

/* 1 while every function we resolved is libevent's (see hooks/libuv.c). */
static int is_libevent = 1;

#define EV_RESOLVE(name)                                                            \
	do {                                                                        \
		if (AS_UNLIKELY(!real_##name)) {                                    \
			real_##name = as_resolve_lib(#name);                        \
			if (real_##name && !as_lib_is((void *)real_##name, "libevent")) \
				CMM_STORE_SHARED(is_libevent, 0);                   \
		}                                                                   \
	} while (0)

/* Inside event_base_once: libevent's own event_assign for the once-event
 * (with its internal event_once_cb) is not wrapped; our once-trampoline
 * already times the program's callback, and the once-event's memory is
 * freed by libevent without event_free, which would strand its wrapper. */
static __thread int in_once __attribute__((tls_model("initial-exec")));

/* The base of this thread's innermost event_base_loop: its callbacks are
 * the ones the trampoline can be running. */
static __thread void *loop_base __attribute__((tls_model("initial-exec")));

#define EVLOOP_ONCE 1
#define EVLOOP_NONBLOCK 2

static void tramp_event(int fd, short what, void *arg);

/* The wrapper of ev when libevent holds our trampoline for it. */
static struct as_wrap *wrapper_of(const void *ev)
{
	EV_RESOLVE(event_get_callback);
	if (!ev || !real_event_get_callback || real_event_get_callback(ev) != tramp_event)
		return NULL;
	return as_wrap_find(ev, AS_WRAP_EVENT);
}

/* The program's callback for the event libevent is running now with arg;
 * NULL when the trampoline was called some other way. */
static event_cb running_callback(void *arg)
{
	void *ev = loop_base ? real_event_base_get_running_event(loop_base) : NULL;
	if (!ev || real_event_get_callback_arg(ev) != arg)
		return NULL;
	struct as_wrap *w = wrapper_of(ev);
	return w ? (event_cb)CMM_LOAD_SHARED(w->cb[0]) : NULL;
}

static void tramp_event(int fd, short what, void *arg)
{
	static int warned;
	event_cb cb = running_callback(arg);
	if (cb) {
		AS_TIMED_CALLBACK(AS_CB_EVENT, cb, cb(fd, what, arg));
	} else if (!uatomic_xchg(&warned, 1)) {
		as_warn("asyncshim: an event callback was called outside libevent's loop; "
			"the shim cannot tell which, it was not run");
	}
}

static void tramp_once(int fd, short what, void *p)
{
	struct as_wrap *w = p;
	event_cb cb = (event_cb)w->cb[0];
	void *arg = w->arg;
	as_wrap_free_unlisted(w);       /* libevent runs a once-callback once */
	AS_TIMED_CALLBACK(AS_CB_EVENT_ONCE, cb, cb(fd, what, arg));
}

/* Record ev's callback (creating its wrapper); 0: leave the callback as it
 * is (then the trampoline could not find its event, or not record). */
static int wrap_event(void *ev, event_cb cb)
{
	if (!cb || cb == tramp_event || cb == tramp_once || in_once || !CMM_LOAD_SHARED(is_libevent))
		return 0;
	EV_RESOLVE(event_base_get_running_event);
	EV_RESOLVE(event_get_callback);
	EV_RESOLVE(event_get_callback_arg);
	if (!real_event_base_get_running_event || !real_event_get_callback || !real_event_get_callback_arg)
		return 0;
	struct as_wrap *w = as_wrap_add(ev, AS_WRAP_EVENT);
	if (!w)
		return 0;
	CMM_STORE_SHARED(w->cb[0], (void *)cb);
	return 1;
}

AS_EXPORT int event_assign(void *ev, void *base, int fd, short events, event_cb cb, void *arg)
{
	EV_RESOLVE(event_assign);
	if (!real_event_assign)
		return -1;
	if (!wrap_event(ev, cb))
		return real_event_assign(ev, base, fd, events, cb, arg);
	return real_event_assign(ev, base, fd, events, tramp_event, arg);
}

/* event_new and event_set call event_assign through the PLT in Debian's
 * libevent; if a build does not, wrap after the fact. */
AS_EXPORT void *event_new(void *base, int fd, short events, event_cb cb, void *arg)
{
	EV_RESOLVE(event_new);
	if (!real_event_new)
		return NULL;
	void *ev = real_event_new(base, fd, events, cb, arg);
	if (ev && cb && !wrapper_of(ev) && real_event_assign && wrap_event(ev, cb))
		real_event_assign(ev, base, fd, events, tramp_event, arg);
	return ev;
}

AS_EXPORT void event_set(void *ev, int fd, short events, event_cb cb, void *arg)
{
	EV_RESOLVE(event_set);
	EV_RESOLVE(event_get_base);
	if (!real_event_set)
		return;
	real_event_set(ev, fd, events, cb, arg);
	if (cb && !wrapper_of(ev) && real_event_assign && real_event_get_base && wrap_event(ev, cb))
		real_event_assign(ev, real_event_get_base(ev), fd, events, tramp_event, arg);
}

AS_EXPORT void event_free(void *ev)
{
	EV_RESOLVE(event_free);
	if (!real_event_free)
		return;
	struct as_wrap *w = ev ? as_wrap_find(ev, AS_WRAP_EVENT) : NULL;
	real_event_free(ev);
	if (w)
		as_wrap_del(w);
}

AS_EXPORT int event_base_once(void *base, int fd, short events, event_cb cb, void *arg, const void *tv)
{
	EV_RESOLVE(event_base_once);
	if (!real_event_base_once)
		return -1;
	struct as_wrap *w = cb && CMM_LOAD_SHARED(is_libevent) ? as_wrap_alloc_unlisted() : NULL;
	if (!w)
		return real_event_base_once(base, fd, events, cb, arg, tv);
	w->cb[0] = (void *)cb;
	w->arg = arg;
	in_once = 1;
	int r = real_event_base_once(base, fd, events, tramp_once, w, tv);
	in_once = 0;
	if (r != 0)
		as_wrap_free_unlisted(w);
	return r;
}

AS_EXPORT int event_base_loop(void *base, int flags)
{
	EV_RESOLVE(event_base_loop);
	if (!real_event_base_loop)
		return -1;
	void *outer = loop_base;
	loop_base = base;
	as_loop_enter();
	int r = real_event_base_loop(base, flags);
	as_loop_leave(!(flags & (EVLOOP_ONCE | EVLOOP_NONBLOCK)));
	loop_base = outer;
	return r;
}

AS_EXPORT int event_base_dispatch(void *base)
{
	EV_RESOLVE(event_base_dispatch);
	if (!real_event_base_dispatch)
		return -1;
	void *outer = loop_base;
	loop_base = base;
	as_loop_enter();
	int r = real_event_base_dispatch(base);
	as_loop_leave(1);
	loop_base = outer;
	return r;
}

/* ---- what the program reads back is its own ----
 * (the argument is: the event holds it) */

AS_EXPORT event_cb event_get_callback(const void *ev)
{
	struct as_wrap *w = wrapper_of(ev);
	if (w)
		return (event_cb)w->cb[0];
	return real_event_get_callback ? real_event_get_callback(ev) : NULL;
}

AS_EXPORT void event_get_assignment(const void *ev, void **base_out, int *fd_out, short *events_out,
				    event_cb *callback_out, void **arg_out)
{
	EV_RESOLVE(event_get_assignment);
	if (!real_event_get_assignment)
		return;
	real_event_get_assignment(ev, base_out, fd_out, events_out, callback_out, arg_out);
	struct as_wrap *w = wrapper_of(ev);
	if (w && callback_out)
		*callback_out = (event_cb)w->cb[0];
}
