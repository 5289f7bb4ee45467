/* wait.c — the loop's own wait: epoll_wait/epoll_pwait/epoll_pwait2, and
 * poll/ppoll/select/pselect.
 *
 * Entering the wait ends an iteration, returning from it starts the next.
 * The epoll family always marks a loop.  The poll family marks a loop only
 * on a thread that never used epoll and has waited with a non-zero timeout
 * twice (one-shot polls, e.g. waiting for a single connect, are not loops);
 * on an epoll loop thread a poll is an ordinary call that can block it. */
#include "shim.h"

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <urcu/uatomic.h>

enum { FAMILY_NONE, FAMILY_EPOLL, FAMILY_POLL };

/* Returns the thread to record this wait on, or NULL to pass through. */
static inline AS_HOT struct as_thread *loop_wait(int fam, int waits)
{
	struct as_tls *me = as_me();
	if (AS_UNLIKELY(!CMM_LOAD_SHARED(as_active) || me->busy || me->internal)) {
		if (AS_UNLIKELY(me->ringless))
			uatomic_inc(&as_ringless_events);   /* a wait it could not record */
		return NULL;
	}
	if (AS_LIKELY(me->family == fam))
		return as_thread_self();
	if (fam == FAMILY_EPOLL) {
		me->family = FAMILY_EPOLL;
		return as_thread_self();
	}
	if (me->family == FAMILY_EPOLL || !waits || ++me->poll_waits < 2)
		return NULL;
	me->family = FAMILY_POLL;
	return as_thread_self();
}

/* A wait on an epoll fd other than the loop's own (the first one the
 * thread waited on) is a nested loop inside an iteration: timed like any
 * call, and the iteration goes on around it (Node's execSync is one). */
static inline AS_HOT int nested_wait(int epfd)
{
	struct as_tls *me = as_me();
	if (AS_LIKELY(me->loop_fd == epfd + 1))
		return 0;
	if (!me->loop_fd) {
		me->loop_fd = epfd + 1;
		return 0;
	}
	return 1;
}

/* Recording is off (enabled=0, asyncshim ctl disable): a loop thread that
 * waits now ends its open iteration unrecorded, so recording restarts with
 * its first wait after enable: an iteration that began before (or while)
 * recording was off is not one we measured.  The thread does it itself:
 * iter_start is its own (the collector writing it raced with the thread). */
static __attribute__((noinline, cold)) void wait_unrecorded(void)
{
	struct as_thread *t = as_tls.t;
	if (t && t->iter_start)
		CMM_STORE_SHARED(t->iter_start, 0);
}

/* The wait call itself, bracketed; errno of the real call is untouched
 * because nothing after it calls into libc (as_watchdog_wake keeps it). */
#define AS_WAIT_BODY(fam, waits, type, call, fd, expr, made)              \
	do {                                                              \
		if (AS_UNLIKELY(!CMM_LOAD_SHARED(as_active))) {           \
			wait_unrecorded();                                \
			return expr;                                      \
		}                                                         \
		struct as_thread *t_ = loop_wait(fam, waits);             \
		if (!t_) {                                                \
			if (as_me()->family == FAMILY_EPOLL && fam == FAMILY_POLL) \
				AS_TIMED_CALL(type, call, fd, expr);      \
			return expr;                                      \
		}                                                         \
		if (fam == FAMILY_EPOLL && AS_UNLIKELY(nested_wait(fd)))  \
			AS_TIMED_BODY(type, (call) - AS_CALL_EPOLL_WAIT + AS_CALL_NESTED_EPOLL_WAIT, fd, 0, expr, made); \
		as_wait_begin(t_);                                        \
		type r_ = made;                                           \
		as_wait_end(t_);                                          \
		return r_;                                                \
	} while (0)
#define AS_WAIT(fam, waits, type, call, fd, expr) AS_WAIT_BODY(fam, waits, type, call, fd, expr, expr)
/* a wait glibc makes as one plain syscall: made here (preload/raw.c) */
#define AS_WAIT_RAW(fam, waits, type, call, fd, expr, ...) \
	AS_WAIT_BODY(fam, waits, type, call, fd, expr, AS_RAW_CALL(type, as_me(), expr, __VA_ARGS__))

AS_REAL(int, epoll_wait, (int, struct epoll_event *, int, int));
AS_REAL(int, epoll_pwait, (int, struct epoll_event *, int, int, const sigset_t *));
AS_REAL(int, epoll_pwait2, (int, struct epoll_event *, int, const struct timespec *, const sigset_t *));
AS_REAL(int, poll, (struct pollfd *, nfds_t, int));
AS_REAL(int, ppoll, (struct pollfd *, nfds_t, const struct timespec *, const sigset_t *));
AS_REAL(int, select, (int, fd_set *, fd_set *, fd_set *, struct timeval *));
AS_REAL(int, pselect, (int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *));

AS_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int n, int timeout)
{
	AS_RESOLVE(epoll_wait);
	AS_WAIT_RAW(FAMILY_EPOLL, 1, int, AS_CALL_EPOLL_WAIT, epfd, real_epoll_wait(epfd, ev, n, timeout), SYS_epoll_wait,
		    epfd, (long)ev, n, timeout, 0, 0);
}

AS_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int n, int timeout, const sigset_t *ss)
{
	AS_RESOLVE(epoll_pwait);
	AS_WAIT_RAW(FAMILY_EPOLL, 1, int, AS_CALL_EPOLL_PWAIT, epfd, real_epoll_pwait(epfd, ev, n, timeout, ss),
		    SYS_epoll_pwait, epfd, (long)ev, n, timeout, (long)ss, _NSIG / 8);
}

AS_EXPORT int epoll_pwait2(int epfd, struct epoll_event *ev, int n, const struct timespec *timeout,
			   const sigset_t *ss)
{
	AS_RESOLVE(epoll_pwait2);
	AS_WAIT(FAMILY_EPOLL, 1, int, AS_CALL_EPOLL_PWAIT2, epfd,
		real_epoll_pwait2(epfd, ev, n, timeout, ss));
}

static inline int ts_waits(const struct timespec *ts)
{
	return !ts || ts->tv_sec || ts->tv_nsec;
}

AS_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	AS_RESOLVE(poll);
	AS_WAIT_RAW(FAMILY_POLL, timeout != 0, int, AS_CALL_POLL, -1, real_poll(fds, n, timeout), SYS_poll, (long)fds,
		    (long)n, timeout, 0, 0, 0);
}

AS_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *ss)
{
	AS_RESOLVE(ppoll);
	AS_WAIT(FAMILY_POLL, ts_waits(timeout), int, AS_CALL_PPOLL, -1, real_ppoll(fds, n, timeout, ss));
}

AS_EXPORT int select(int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *timeout)
{
	AS_RESOLVE(select);
	AS_WAIT(FAMILY_POLL, !timeout || timeout->tv_sec || timeout->tv_usec, int, AS_CALL_SELECT, -1,
		real_select(n, r, w, e, timeout));
}

AS_EXPORT int pselect(int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *timeout,
		      const sigset_t *ss)
{
	AS_RESOLVE(pselect);
	AS_WAIT(FAMILY_POLL, ts_waits(timeout), int, AS_CALL_PSELECT, -1, real_pselect(n, r, w, e, timeout, ss));
}
