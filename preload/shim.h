/* shim.h — the hook API: all that hooks/ may use of the runtime.
 *
 * The hot path is written once, here, as inline functions and the
 * AS_TIMED_CALL macro: every hook in hooks/ is a few lines that use them.
 * The runtime's internals (preload/ and collector/ among themselves) are in
 * preload/runtime.h, which hooks/ never include.
 *
 * The runtime never calls a function the shim interposes: its system calls
 * and locks are its own (preload/sys.h), so none of its work lands in a
 * hook.  What still can: code of other libraries the runtime calls, through
 * their PLT -- liburcu-bp (pthread_mutex_lock in its registry and
 * synchronize_rcu), libunwind (pipe2/write/read to validate addresses:
 * as_tls.unwinding), msgpack-c and libc's stdio (malloc, not hooked), the
 * next library's sigaction, pthread_join and dlclose (sys.c, on purpose:
 * a sanitizer runtime must see them) -- and a program's signal handler
 * that runs in the middle of a shim slow path.  Those are what as_tls.busy
 * (this thread is inside the shim: not recorded, not registered again) and
 * as_tls.internal (a shim thread, or one past its exit) still hold off.
 */
#ifndef ASYNCSHIM_SHIM_H
#define ASYNCSHIM_SHIM_H


#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <x86intrin.h>
#include <urcu/list.h>
#include <urcu/system.h>
#include <urcu/arch.h>

#include "record.h"
#include "offcpu.h"

/* ThreadSanitizer cannot know that liburcu's volatile shared accesses are a
 * memory-ordering protocol (x86 keeps them ordered).  In the TSan build
 * (make build/tsan/libasyncshim.so) they become the C11 acquire/release
 * atomics they stand for, so TSan checks the protocol itself.  Include this
 * header before urcu/rculist.h so the RCU list code uses them too. */
/* Code the TSan runtime itself reaches while it initialises (it calls
 * sigaction through our hook) must not be instrumented. */
#define AS_NO_TSAN __attribute__((no_sanitize_thread))

#ifdef __SANITIZE_THREAD__
#undef _CMM_LOAD_SHARED
#define _CMM_LOAD_SHARED(p) \
	__extension__({ __typeof__(p) l_; __atomic_load(&(p), &l_, __ATOMIC_ACQUIRE); l_; })
#undef _CMM_STORE_SHARED
#define _CMM_STORE_SHARED(x, v) \
	__extension__({ __typeof__(x) v_ = (v); __atomic_store(&(x), &v_, __ATOMIC_RELEASE); v_; })
#endif

#define AS_HOT __attribute__((hot))
#define AS_LIKELY(x) __builtin_expect(!!(x), 1)
#define AS_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* What the hooks' fast paths read (the real functions' addresses,
 * as_active, the clock kind, the threshold, the watchdog's parked flag) is
 * kept together, apart from everything else: a kernel with
 * page-table isolation and no PCID (this project's VMs) flushes the TLB at
 * every syscall, so each further page a hook touches costs a page walk on
 * every call (docs/performance.md). */
#define AS_HOT_DATA __attribute__((section(".data.asyncshim.hot")))
/* on the declarations too, or -fPIC code loads their address first */
#define AS_HIDDEN __attribute__((visibility("hidden")))

#define AS_STALL_SAMPLES 64   /* samples kept per stall (collector/stacks.c) */

/* One per thread that ever reached a loop wait or was registered for other
 * reasons: the ring of records plus state.  Producer fields are written only
 * by the owning thread; the collector owns tail and the c_* fields. */
struct as_thread {
	/* The process's own memory, never part of a shared ring file: what
	 * the collector and the watchdog follow, write through or unmap
	 * (preload/shm.c maps the file after this page). */
	union {
		struct {
			struct cds_list_head node;     /* registry, RCU list */
			struct as_thread *c_reclaim_next; /* collector: exited, unlinked, awaiting a grace period */
			pthread_t pthread;             /* for pthread_cancel (preload/raw.c) */
			struct as_tls *tls;            /* the thread's as_tls, ditto */
			size_t map_size;               /* the whole mapping, this page included */
			pid_t tid;
			pid_t shm_tid;                 /* nonzero: mapped from PREFIX.shm_tid (preload/shm.c) */
			uint64_t api_ns;               /* what bindings measured their span calls cost (span.c) */
			uint64_t c_api_seen;           /* collector: api_ns already counted */
		};
		char private_page[4096];
	};

	/* From here on: in the ring file when the ring is shared. */
	uint64_t shm_magic;            /* names the layout; with shm_start_time, kept when emptied */
	uint64_t shm_start_time;       /* the process's start time (/proc/PID/stat field 22) */
	int dead;                      /* set once by the thread at exit */
	char name[16];                 /* filled at exit; live threads: /proc */
	uint64_t cap;                  /* ring capacity, power of two */

	/* producer */
	uint64_t iter_start;           /* ticks; 0 = not inside an iteration */
	uint64_t wpos;                 /* next slot to reserve */
	unsigned nest;                 /* reservations in flight (signal nesting) */
	uint64_t tail_seen;            /* cached copy of tail */
	uint64_t dropped;              /* atomic: records that found the ring full */
	int is_loop;                   /* this thread has waited in a loop wait */
	uint64_t calls;                /* timed calls so far (as_tls.calls), published per iteration */
	uint64_t stack_ticks;          /* time spent capturing blocking calls' stacks */

	/* stall sampling (preload/watchdog.c) */
	int sample_pending;            /* a sample signal is on its way to it */
	uint64_t wd_iter, wd_next;     /* watchdog-private */
	struct as_offcpu off;          /* what the watchdog found it waiting in (offcpu.h) */

	uint64_t head __attribute__((aligned(64)));  /* published by producer */
	uint64_t tail __attribute__((aligned(64)));  /* published by collector */

	/* collector-private */
	int c_announced;               /* thread record written */
	uint64_t c_drained;            /* drained up to here; becomes tail once written */
	uint64_t c_blocked;            /* ns of blocking calls in the open iteration */
	uint64_t c_sample_iter;        /* iteration start (ticks) of c_samples */
	uint64_t c_sample_ns;          /* time their handlers took */
	uint32_t c_sampled, c_nsamples; /* samples taken / kept in that iteration */
	uint32_t c_samples[AS_STALL_SAMPLES];  /* their interned stack ids */
	/* spans (collector/spans.c) and the shim's own cost (collector/overhead.c) */
	uint64_t c_at_span, c_at_request;      /* SPAN_AT for the next BLOCK */
	uint64_t c_stall_iter, c_stall_span, c_stall_request;  /* of the first sample */
	uint64_t c_calls_seen;                 /* calls already counted */
	uint64_t c_stack_seen;                 /* stack_ticks already counted */

	struct as_record ring[] __attribute__((aligned(64)));
};

/* Thread-local state, kept tiny and in static TLS (the library is always
 * loaded at start-up with LD_PRELOAD) so the hot path reads it in one load. */
struct as_tls {
	struct as_thread *t;
	int loop;          /* this thread runs an event loop */
	int busy;          /* inside shim code that must not re-enter hooks */
	int internal;      /* a shim thread, or a thread that is exiting */
	int family;        /* hooks/wait.c: the wait family that made it a loop */
	int loop_fd;       /* hooks/wait.c: the loop's own epoll fd + 1, 0 = none yet */
	unsigned poll_waits;  /* hooks/wait.c: poll-family waits so far */
	unsigned sampled;     /* stall-sample signals received (preload/watchdog.c) */
	uint64_t calls;       /* calls timed on this loop thread (the shim's own cost) */
	int own_fds;          /* a shim thread with an fd table of its own (preload/fds.c) */
	/* raw syscalls (preload/raw.c): written by this thread but for kick,
	 * which pthread_cancel on another thread sets (through as_thread.tls) */
	int raw;              /* timed calls may make their syscall themselves */
	int in_raw;           /* inside one now (nested: a signal handler's) */
	int kick;             /* cancelled: leave it through libc */
	int unwinding;        /* inside libunwind: its pipe2 is refused (preload/stack.c) */
	char *own_stack;      /* where slow paths run (preload/stack.c), NULL = in place */
	int ringless;         /* no memory for its ring: its waits are counted, not recorded */
};
extern __thread struct as_tls as_tls __attribute__((tls_model("initial-exec")));

static inline struct as_tls *as_me(void)
{
	return &as_tls;
}

extern pid_t as_pid;               /* getpid() of this process image's owner */
/* Recording happens only while this is 1: after a successful init, with
 * enabled=1, before the final flush. */
extern int as_active AS_HIDDEN;
/* The shim is up: from a successful init to the final flush, whether
 * recording or disabled at run time (asyncshim ctl PID disable). */
extern int as_live;
/* The main thread may end before the others: it called pthread_exit, or
 * this is a fork child of another thread, which ends when its start
 * function returns.  The collector then ends the process once only the
 * shim's threads are left, as glibc would without them (collector.c). */
extern int as_main_exited;
/* threads that got no ring (no memory), and their loop waits: dropped
 * events, said in the end record (preload/buffer.c) */
extern uint64_t as_ringless_events;
extern int as_use_tsc AS_HIDDEN;
extern uint64_t as_block_ticks AS_HIDDEN;   /* hot-path threshold, slightly under block_ms */

/* ---- clock ---- */
uint64_t as_mono_ns(void);

static inline AS_HOT uint64_t as_clock(int tsc)
{
	if (AS_LIKELY(tsc))
		return __rdtsc();
	return as_mono_ns();
}

static inline AS_HOT uint64_t as_now(void)
{
	return as_clock(as_use_tsc);
}

/* ---- per-thread buffers (preload/buffer.c) ---- */
struct as_thread *as_thread_register(void);

static inline AS_HOT struct as_thread *as_thread_self(void)
{
	struct as_thread *t = as_me()->t;
	if (AS_LIKELY(t))
		return t;
	return as_thread_register();
}

/* Append one record.  Safe against a signal handler on the same thread
 * pushing in the middle: slots are reserved first and published only when
 * the outermost push finishes.  A full ring drops and counts. */
static inline AS_HOT struct as_record *as_reserve(struct as_thread *t)
{
	uint64_t pos = t->wpos;
	if (AS_UNLIKELY(pos - t->tail_seen >= t->cap)) {
		t->tail_seen = CMM_LOAD_SHARED(t->tail);
		if (pos - t->tail_seen >= t->cap) {
			__atomic_fetch_add(&t->dropped, 1, __ATOMIC_RELAXED);
			return NULL;
		}
	}
	t->nest++;
	cmm_barrier();
	t->wpos = pos + 1;
	cmm_barrier();
	return &t->ring[pos & (t->cap - 1)];
}

static inline AS_HOT void as_commit(struct as_thread *t)
{
	cmm_barrier();
	if (--t->nest == 0) {
		cmm_smp_wmb();
		CMM_STORE_SHARED(t->head, t->wpos);
	}
}

/* as_reserve for N consecutive slots (a record and the FRAMES of its
 * stack), all or nothing; one as_commit publishes them.  Slow paths only.
 * Counts nothing when full: the caller falls back to as_reserve. */
static inline struct as_record *as_reserve_n(struct as_thread *t, uint64_t n)
{
	uint64_t pos = t->wpos;
	if (pos + n - t->tail_seen > t->cap) {
		t->tail_seen = CMM_LOAD_SHARED(t->tail);
		if (pos + n - t->tail_seen > t->cap)
			return NULL;
	}
	t->nest++;
	cmm_barrier();
	t->wpos = pos + n;
	cmm_barrier();
	return &t->ring[pos & (t->cap - 1)];
}

/* ---- hooks' shared slow paths ---- */
void as_blocking(struct as_thread *t, int call, int fd, uint64_t t0, uint64_t t1);
#include <signal.h>
void as_quiet_begin(sigset_t *old);
void as_quiet_end(const sigset_t *old);
void *as_resolve(const char *name);

/* Resolve the real function on first use (also before our constructor). */
#define AS_REAL(ret, name, params) static ret (*real_##name) params AS_HOT_DATA
#define AS_RESOLVE(name)                                                   \
	do {                                                              \
		if (AS_UNLIKELY(!CMM_LOAD_SHARED(real_##name)))           \
			CMM_STORE_SHARED(real_##name, as_resolve(#name)); \
	} while (0)

/* ---- fds that cannot block (preload/fds.c, hooks/fd.c) ----
 * A call on a socket, pipe, eventfd, timerfd or signalfd in O_NONBLOCK mode
 * returns EAGAIN instead of waiting, so it can never be a blocking call;
 * CPU it burns is a stall, which the watchdog samples.  The shim follows
 * every such fd from its creation (socket, accept, pipe, ...) through
 * fcntl(F_SETFL), ioctl(FIONBIO), dup and close; an fd it did not see made
 * (inherited, or made by a call it does not interpose) is never in the
 * map, so its calls are timed as before.  Calls on mapped fds skip the two
 * clock reads and tail-jump to the real function (docs/performance.md). */
#define AS_FD_MAX 65536
extern uint64_t as_fd_fast[AS_FD_MAX / 64] AS_HIDDEN;

static inline AS_HOT int as_fd_cannot_block(int fd)
{
	return (unsigned)fd < AS_FD_MAX && (CMM_LOAD_SHARED(as_fd_fast[(unsigned)fd / 64]) >> ((unsigned)fd % 64) & 1);
}

/* These keep errno and return FD, so a hook can wrap its result in them. */
int as_fd_note(int fd, int kind, int nonblock);  /* kind: O_NONBLOCK is honoured */
int as_fd_copy(int from, int to);
void as_fd_forget(int fd);
void as_fd_forget_range(unsigned first, unsigned last);
void as_fd_set_nonblock(int fd, int nonblock);

/* ---- raw syscalls (preload/raw.c) ----
 * A timed call on a loop thread makes its syscall itself instead of calling
 * libc's function: on this project's machines the return from libc back
 * into the hook after a syscall (a mispredicted return, libc's page walked
 * again after the TLB flush, libc's cancellation bookkeeping) costs more
 * than everything else the hook does (docs/performance.md).  The syscall
 * and its arguments are the ones glibc's function makes.
 * Cancellation stays libc's: glibc makes a blocking call cancellable while
 * it waits, and a raw syscall is not.  So pthread_cancel (hooks/process.c)
 * turns raw syscalls off for good and kicks a target that is inside one:
 * it sets the target's kick flag and sends it the shim's signal, whose
 * handler moves a thread caught between the flag check and the end of the
 * syscall to the site's pad (as_raw_sites, one entry per inlined copy);
 * the pad returns AS_RAW_KICKED and the hook makes the call again through
 * libc, which acts on the cancellation as it would have.
 * A thread uses raw syscalls only while that signal can reach it (as_tls.raw:
 * checked when it becomes a loop thread, kept up to date by the
 * sigprocmask and pthread_sigmask hooks), and only if the signal exists. */
extern int as_raw_ok AS_HIDDEN;
#define AS_RAW_KICKED LONG_MIN    /* no syscall returns it */

#ifdef __SANITIZE_THREAD__
#define AS_RAW_USABLE(me) 0       /* TSan must see the calls it intercepts */
#else
#define AS_RAW_USABLE(me) (CMM_LOAD_SHARED(as_raw_ok) && (me)->raw)
#endif

static inline AS_HOT __attribute__((always_inline)) long as_raw_syscall(struct as_tls *me, long nr, long a,
									long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long r;
	me->in_raw++;           /* a count: a handler's call may nest inside */
	__asm__ volatile("1:	cmpl $0, %[kick]\n"
			 "	jne 3f\n"
			 "	syscall\n"
			 "2:\n"
			 "	.pushsection .text.unlikely,\"ax\",@progbits\n"
			 "3:	movabsq $0x8000000000000000, %%rax\n"
			 "	jmp 2b\n"
			 "	.popsection\n"
			 "	.pushsection as_raw_sites,\"aw\",@progbits\n"
			 "	.balign 8\n"
			 "	.quad 1b, 2b, 3b\n"
			 "	.popsection\n"
			 : "=a"(r)
			 : "0"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9), [kick] "m"(me->kick)
			 : "rcx", "r11", "memory", "cc");
	me->in_raw--;
	return r;
}

/* libc's convention: -errno becomes -1 and errno */
static inline long as_raw_result(long r)
{
	if (AS_UNLIKELY((unsigned long)r > -4096UL)) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

/* The call EXPR stands for, made by the hook itself when it may; EXPR (the
 * call through libc) otherwise.  The rest are the syscall's number and six
 * arguments (unused ones 0). */
#define AS_RAW_CALL(type, me, expr, ...)                                       \
	__extension__({                                                       \
		type v_;                                                      \
		if (AS_LIKELY(AS_RAW_USABLE(me))) {                           \
			long k_ = as_raw_syscall(me, __VA_ARGS__);            \
			v_ = AS_UNLIKELY(k_ == AS_RAW_KICKED) ? (expr) : (type)as_raw_result(k_); \
		} else {                                                      \
			v_ = (expr);                                          \
		}                                                             \
		v_;                                                           \
	})

int as_raw_thread_ok(void);
void as_raw_mask_changed(int how, const void *set);
void as_raw_cancel(pthread_t th);

/* The body of every non-wait hook: pass straight through unless this is a
 * loop thread with recording on and the call can block (NONBLOCK false);
 * otherwise time the call and, only when it is already over the threshold,
 * take the slow path (which keeps errno).
 * The clock kind and the threshold are read before the call, so after it
 * (when the syscall may have flushed the TLB) the hook touches no memory but
 * its stack and as_tls: two TSC reads, a subtraction and a compare. */
#define AS_TIMED_BODY(type, call, fd, nonblock, expr, made)                 \
	do {                                                                  \
		struct as_tls *me_;                                           \
		if (AS_LIKELY(!CMM_LOAD_SHARED(as_active) ||                  \
			      !(me_ = as_me())->loop || me_->busy || (nonblock))) \
			return expr;                                          \
		int tsc_ = as_use_tsc;                                        \
		uint64_t limit_ = CMM_LOAD_SHARED(as_block_ticks);            \
		me_->calls++;                                                 \
		uint64_t t0_ = as_clock(tsc_);                                \
		type r_ = made;                                               \
		uint64_t t1_ = as_clock(tsc_);                                \
		if (AS_UNLIKELY(t1_ - t0_ >= limit_))                         \
			as_blocking(me_->t, call, fd, t0_, t1_);              \
		return r_;                                                    \
	} while (0)
#define AS_TIMED_CALL_NB(type, call, fd, nonblock, expr) AS_TIMED_BODY(type, call, fd, nonblock, expr, expr)
/* ... and the ones glibc makes as one plain syscall: made by the hook */
#define AS_TIMED_RAW_NB(type, call, fd, nonblock, expr, ...) \
	AS_TIMED_BODY(type, call, fd, nonblock, expr, AS_RAW_CALL(type, me_, expr, __VA_ARGS__))
#define AS_TIMED_RAW(type, call, fd, expr, ...) \
	AS_TIMED_RAW_NB(type, call, fd, as_fd_cannot_block(fd), expr, __VA_ARGS__)
#define AS_TIMED_CALL(type, call, fd, expr) AS_TIMED_CALL_NB(type, call, fd, as_fd_cannot_block(fd), expr)

/* ---- loop waits (used by hooks/wait.c) ---- */
/* iter_start is read by the watchdog (preload/watchdog.c): 0 while the
 * thread is in its wait, so a thread in its wait is never signalled. */
static inline AS_HOT void as_wait_begin(struct as_thread *t)
{
	uint64_t now = as_now(), start = t->iter_start;
	if (AS_LIKELY(start)) {
		CMM_STORE_SHARED(t->iter_start, 0);
		struct as_record *r = as_reserve(t);
		if (AS_LIKELY(r)) {
			r->kind = AS_REC_ITER;
			r->ts = start;
			r->dur = now - start;
			as_commit(t);
		}
	}
	struct as_tls *me = as_me();
	CMM_STORE_SHARED(t->calls, me->calls);  /* the shim's own cost, per iteration */
	if (AS_UNLIKELY(!me->loop)) {
		me->loop = 1;
		me->raw = as_raw_thread_ok();
		CMM_STORE_SHARED(t->is_loop, 1);
	}
}

/* The watchdog sleeps (as_wd_parked = 1) while every loop waits; the
 * first iteration to start wakes it.  No fence here: the watchdog pairs its
 * side with membarrier() (preload/watchdog.c). */
extern int as_wd_parked AS_HIDDEN;
void as_watchdog_wake(void);

static inline AS_HOT void as_wait_end(struct as_thread *t)
{
	CMM_STORE_SHARED(t->iter_start, as_now());
	cmm_barrier();
	if (AS_UNLIKELY(CMM_LOAD_SHARED(as_wd_parked)))
		as_watchdog_wake();
}

/* ---- what the runtime must hear of, from the hooks ---- */
/* the process ends (exit, exec, a death) / an exec failed */
void as_collector_final(const char *reason);
void as_collector_resume(void);
void as_modules_sync(void);             /* dlopen/dlclose: the module map (collector/modules.c) */
/* the program's signal handlers: the shim's own (preload/init.c, watchdog.c) stay its own */
int as_signal_owned(int sig);
void as_signal_release(int sig);
void *as_own_handler(int sig);
/* the shim's own code (preload/stack.c): a lock it takes is not the program's wait */
int as_pc_in_shim(const void *pc) AS_HIDDEN;
int as_sample_signal(int sig);
struct sigaction;
int as_sample_sigaction(int sig, const struct sigaction *act, struct sigaction *old);
/* per-thread credentials the shim's threads follow (preload/creds.c) */
void as_creds_prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5);
void as_creds_capset(const void *hdr, const void *data);
/* the sleep family through REAL, resumed when only a stall sample interrupted it */
struct timespec;
int as_nanosleep(int (*real)(const struct timespec *, struct timespec *), const struct timespec *req,
		 struct timespec *rem);
int as_clock_nanosleep(int (*real)(clockid_t, int, const struct timespec *, struct timespec *), clockid_t clk,
		       int flags, const struct timespec *req, struct timespec *rem);
int as_usleep(int (*real)(useconds_t), useconds_t us);
unsigned as_sleep(unsigned (*real)(unsigned), unsigned s);

#define AS_EXPORT __attribute__((visibility("default")))

/* ---- misc ---- */
pid_t as_gettid(void);
void as_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
