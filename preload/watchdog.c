/* watchdog.c — stall sampling: a shim thread that takes the stack of a loop
 * thread while the loop is stuck in one iteration.
 *
 * From half stall_ms into an iteration each look also reads, without
 * touching the thread, its state, its scheduler figures and the syscall it
 * sleeps in (preload/offcpu.c): waits no hook timed and the stall's cause.
 *
 * A loop thread whose current iteration (iter_start != 0, i.e. not in its
 * wait) is older than stall_ms gets a realtime signal; the handler unwinds
 * the interrupted stack into the thread's own ring (as_reserve_stack) as a
 * SAMPLE record, and the watchdog repeats that every stall_ms while the
 * iteration lasts.  The collector keeps the samples of iterations that turn
 * out to be stalls (collector/stacks.c).
 *
 * Leaving the program alone:
 * - The watchdog blocks every signal itself, and signals only loop threads
 *   that are inside an iteration, that /proc says are running (state R) and
 *   that do not block the signal.  A thread asleep in a call is never
 *   signalled: nanosleep, epoll_wait, poll, select and the like return EINTR
 *   on any handled signal, SA_RESTART or not.  Residual race: a thread seen
 *   running may enter such a call in the few microseconds before the signal
 *   lands; that one call then returns EINTR, as it would for any signal.
 *   A stalled loop is running user code, so in practice the signal lands there.
 * - At most one sample signal is in flight per thread (sample_pending), so
 *   a thread that blocks the signal never accumulates a queue of them.
 * - The signal is a realtime one nobody uses at start (SIGRTMAX-4 or below),
 *   installed SA_SIGINFO|SA_RESTART.  Ours carry SI_QUEUE and a cookie; any
 *   other delivery goes to what the program installed for that signal, which
 *   the sigaction/signal hooks record and report back (default action: the
 *   process dies of the signal, as it would have).  When the program
 *   installs a handler, ours takes over its mask and SA_RESTART/SA_NODEFER/
 *   SA_ONSTACK flags, so its EINTR semantics stay its own.
 *
 * Costing nothing on healthy loops: while loops iterate, the watchdog looks
 * every stall_ms (sooner when an iteration is due): a pass over the thread
 * list, no syscall unless a thread is stalled.  Once QUIET_LOOKS looks in a
 * row found the loops quiet (none inside an iteration, none finished one
 * since the look before: their rings' heads did not move), it parks on a
 * futex with no timeout, so an idle process costs no wake-up at all.  The
 * next iteration to start wakes it (as_wait_end: one load of as_wd_parked,
 * a futex wake only when parked).  It waits for quiet because a park costs
 * the loop: the membarrier below interrupts every CPU running the process,
 * then the loop thread pays the futex wake.  Parking whenever one look
 * found every loop in its wait made a busy server (redis is in epoll_wait
 * at most looks) pay that up to 100 times a second; now a loop that
 * iterates more often than every QUIET_LOOKS looks never pays it, and one
 * with longer pauses pays it once per pause.
 * The loop side has no fence: parking stores as_wd_parked, then membarrier() makes every running thread's
 * iter_start store visible before the watchdog looks again (a thread that
 * ran past the barrier sees as_wd_parked = 1 and wakes it).  Without
 * membarrier the park times out every second instead. */
#include "runtime.h"
#include "span.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <urcu-bp.h>
#include <urcu/rculist.h>
#include <urcu/uatomic.h>

int as_wd_parked AS_HOT_DATA __attribute__((aligned(64)));
static int sample_sig;           /* 0: no sampling in this process */
static int running;
static int use_membarrier;
static const char cookie = 0;    /* its address marks the samples we send */
static const char kick_cookie = 0;  /* ... and the kicks (preload/raw.c) */
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

/* What the program installed for sample_sig, double-buffered so the handler
 * on another thread never reads a half-written one. */
static struct sigaction prog_acts[2];
static int prog_cur;

/* ---- the handler, on the sampled thread ---- */

/* The record says what the sample cost this thread (fd: ns in the
 * handler), so the trace itself tells what sampling took. */
struct sample {
	struct as_thread *t;
	void *uc;
};

static void sample_slow(void *arg)
{
	struct as_thread *t = ((struct sample *)arg)->t;
	void *uc = ((struct sample *)arg)->uc;
	uint64_t now = as_now(), start = t->iter_start;
	if (!start)
		return;                 /* it reached its wait meanwhile */
	sigset_t old;
	as_quiet_begin(&old);
	as_span_note(t);        /* the span and request the stall is in */
	struct as_record *r = as_reserve_stack(t, uc);
	if (r) {
		double took = (double)(as_now() - now) * CMM_LOAD_SHARED(as_ns_per_tick);
		r->kind = AS_REC_SAMPLE;
		r->ts = now;
		r->dur = start;
		r->fd = took < INT32_MAX ? (int32_t)took : INT32_MAX;
		as_commit(t);
	}
	as_quiet_end(&old);
}

/* On the shim's own stack: the handler runs on the interrupted one (the
 * program's sigaltstack is the program's), which may be a coroutine's. */
static void take_sample(struct as_thread *t, void *uc)
{
	struct sample s = { t, uc };
	as_on_own_stack(sample_slow, &s);
}

/* A delivery we did not send: do what the program asked for. */
static void forward(int sig, siginfo_t *si, void *uc)
{
	struct sigaction a = prog_acts[CMM_LOAD_SHARED(prog_cur)];
	if (a.sa_handler == SIG_IGN)
		return;
	if (a.sa_handler == SIG_DFL) {
		/* a realtime signal's default action ends the process: restore
		 * it and re-send; it is delivered when this handler returns */
		struct sigaction dfl;
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		real_sigaction(sig, &dfl, NULL);
		syscall(SYS_tgkill, getpid(), as_gettid(), sig);
		return;
	}
	if (a.sa_flags & SA_RESETHAND) {
		struct sigaction dfl;
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		int next = !prog_cur;
		prog_acts[next] = dfl;
		CMM_STORE_SHARED(prog_cur, next);
	}
	if (a.sa_flags & SA_SIGINFO)
		a.sa_sigaction(sig, si, uc);
	else
		a.sa_handler(sig);
}

static void sample_handler(int sig, siginfo_t *si, void *uc)
{
	if (si && si->si_code == SI_QUEUE && si->si_value.sival_ptr == (void *)&kick_cookie) {
		as_raw_redirect(uc);
		return;
	}
	if (!si || si->si_code != SI_QUEUE || si->si_value.sival_ptr != (void *)&cookie) {
		forward(sig, si, uc);
		return;
	}
	int saved = errno;
	struct as_thread *t = as_tls.t;
	as_tls.sampled++;               /* for the sleeps below */
	if (t) {
		if (!as_tls.busy && !as_tls.internal && CMM_LOAD_SHARED(as_active))
			take_sample(t, uc);
		CMM_STORE_SHARED(t->sample_pending, 0);
	}
	errno = saved;
}

/* ---- sleeps a sample interrupted (hooks/sleep.c) ----
 * The residual race (top comment) hits a thread that enters a sleep just
 * as the sample signal lands: nanosleep and clock_nanosleep return EINTR on
 * any handled signal.  When a sleep says EINTR and the handler's counter
 * moved meanwhile, the sleep goes on for what is left, so the program sees
 * what it would have without the shim.  (Only a signal of its own landing
 * in those same microseconds would have its EINTR lost.)  Other calls that
 * end with EINTR on any signal (poll, epoll_wait, select...) keep the race:
 * event loops retry them, as they must for any signal. */

static int (*libc_nanosleep)(const struct timespec *, struct timespec *);

static int by_sample(unsigned seen)
{
	return CMM_LOAD_SHARED(as_tls.sampled) != seen;
}

int as_nanosleep(int (*real)(const struct timespec *, struct timespec *), const struct timespec *req,
		 struct timespec *rem)
{
	int saved = errno;
	unsigned seen = as_tls.sampled;
	struct timespec left;
	int r = real(req, &left);
	while (r != 0 && errno == EINTR && by_sample(seen)) {
		seen = as_tls.sampled;
		errno = saved;
		r = real(&left, &left);
	}
	if (r != 0 && errno == EINTR && rem)
		*rem = left;
	return r;
}

int as_clock_nanosleep(int (*real)(clockid_t, int, const struct timespec *, struct timespec *), clockid_t clk,
		       int flags, const struct timespec *req, struct timespec *rem)
{
	unsigned seen = as_tls.sampled;
	int abs = flags & TIMER_ABSTIME;
	struct timespec left;
	int r = real(clk, flags, req, &left);
	while (r == EINTR && by_sample(seen)) {
		seen = as_tls.sampled;
		r = abs ? real(clk, flags, req, NULL) : real(clk, flags, &left, &left);
	}
	if (r == EINTR && rem && !abs)
		*rem = left;
	return r;
}

/* usleep and sleep keep no remainder: go on to a deadline of our own. */
static int sleep_until(uint64_t end, struct timespec *left)
{
	uint64_t now = as_mono_ns();
	if (now >= end || !libc_nanosleep)
		return 0;
	left->tv_sec = (time_t)((end - now) / 1000000000u);
	left->tv_nsec = (long)((end - now) % 1000000000u);
	return libc_nanosleep(left, left);
}

int as_usleep(int (*real)(useconds_t), useconds_t us)
{
	int saved = errno;
	unsigned seen = as_tls.sampled;
	uint64_t end = as_mono_ns() + (uint64_t)us * 1000u;
	int r = real(us);
	while (r != 0 && errno == EINTR && by_sample(seen)) {
		struct timespec left;
		seen = as_tls.sampled;
		errno = saved;
		r = sleep_until(end, &left);
	}
	return r;
}

unsigned as_sleep(unsigned (*real)(unsigned), unsigned s)
{
	int saved = errno;
	unsigned seen = as_tls.sampled;
	uint64_t end = as_mono_ns() + (uint64_t)s * 1000000000u;
	unsigned r = real(s);
	while (r && by_sample(seen)) {
		struct timespec left;
		seen = as_tls.sampled;
		errno = saved;
		if (sleep_until(end, &left) == 0)
			r = 0;
		else if (errno == EINTR)
			r = (unsigned)left.tv_sec + (left.tv_nsec > 0);
		else
			break;
	}
	return r;
}

/* ---- the program's view of sample_sig (hooks/signal.c) ---- */

AS_NO_TSAN int as_sample_signal(int sig)
{
	return sig > 0 && sig == CMM_LOAD_SHARED(sample_sig);
}

static int install(const struct sigaction *prog)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sample_handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (prog && prog->sa_handler != SIG_DFL && prog->sa_handler != SIG_IGN) {
		sa.sa_mask = prog->sa_mask;
		sa.sa_flags = SA_SIGINFO | (prog->sa_flags & (SA_RESTART | SA_NODEFER | SA_ONSTACK));
	}
	return real_sigaction(sample_sig, &sa, NULL);
}

int as_sample_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	(void)sig;
	struct sigaction prev = prog_acts[CMM_LOAD_SHARED(prog_cur)];
	if (act) {
		if (install(act) != 0)
			return -1;
		int next = !prog_cur;
		prog_acts[next] = *act;
		CMM_STORE_SHARED(prog_cur, next);
	}
	if (old)
		*old = prev;
	return 0;
}

/* ---- the watchdog thread ---- */

static int send_signal(pid_t tid, const char *what)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	si.si_signo = sample_sig;
	si.si_code = SI_QUEUE;
	si.si_pid = as_pid;
	si.si_uid = getuid();
	si.si_value.sival_ptr = (void *)what;
	return (int)syscall(SYS_rt_tgsigqueueinfo, as_pid, tid, sample_sig, &si);
}

static void sample(struct as_thread *t)
{
	if (CMM_LOAD_SHARED(t->sample_pending))
		return;
	CMM_STORE_SHARED(t->sample_pending, 1);
	if (send_signal(t->tid, &cookie) != 0)
		CMM_STORE_SHARED(t->sample_pending, 0);
}

/* ---- kicks (preload/raw.c): the same signal, another cookie ---- */

int as_kick_signal(void)
{
	return CMM_LOAD_SHARED(sample_sig);
}

/* Set the target's flag, then signal it if it is inside a raw syscall.
 * The thread stores in_raw before it reads kick, and we store kick before
 * we read in_raw: membarrier orders both sides (with none, signal anyway:
 * a stray EINTR is better than a cancellation that never happens). */
void as_kick(struct as_thread *t)
{
	int saved = errno;
	CMM_STORE_SHARED(t->tls->kick, 1);
	int fenced = use_membarrier &&
		     syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
	if (!fenced || CMM_LOAD_SHARED(t->tls->in_raw))
		send_signal(t->tid, &kick_cookie);
	errno = saved;
}

/* One pass over the loop threads: sample the stalled ones.  Returns whether
 * any loop is inside an iteration; *next gets the earliest time (ticks) one
 * of them is due, *done a sum that moves whenever a loop finishes an
 * iteration (its record is pushed or dropped). */
/* Held by a look (scan) and by as_watchdog_finish. */
static struct as_lock look_lock = AS_LOCK_INIT;

static int scan(uint64_t now, uint64_t stall, uint64_t *next, uint64_t *done)
{
	struct as_thread *t;
	int busy = 0;
	as_lock(&look_lock);
	rcu_read_lock();
	cds_list_for_each_entry_rcu(t, &as_threads, node) {
		if (!CMM_LOAD_SHARED(t->is_loop) || CMM_LOAD_SHARED(t->dead))
			continue;
		*done += CMM_LOAD_SHARED(t->head) + CMM_LOAD_SHARED(t->dropped);
		uint64_t start = CMM_LOAD_SHARED(t->iter_start);
		if (start != t->off.iter)
			as_offcpu_done(t, now);         /* the iteration it watched is over */
		if (!start)
			continue;
		busy = 1;
		if (start != t->wd_iter) {
			t->wd_iter = start;
			t->wd_next = start + stall / 2;
		}
		if (now >= t->wd_next) {
			/* from half stall_ms: what it runs or waits in, its
			 * scheduler figures; from stall_ms: a sample if it runs */
			int runs = as_offcpu_look(t, start, now, sample_sig);
			if (runs && now - start >= stall)
				sample(t);
			t->wd_next = now - start < stall ? start + stall : now + stall;
		}
		if (t->wd_next < *next)
			*next = t->wd_next;
	}
	rcu_read_unlock();
	as_unlock(&look_lock);
	return busy;
}

/* The final flush: the watchdog will not look again, so what it found in
 * iterations that ended since its last look is queued now.  Bounded: a
 * watchdog stuck in a look is not waited for. */
void as_watchdog_finish(void)
{
	if (!running || as_lock_timed(&look_lock, 200) != 0)
		return;
	struct as_thread *t;
	uint64_t now = as_now();
	rcu_read_lock();
	cds_list_for_each_entry_rcu(t, &as_threads, node)
		if (t->off.iter && CMM_LOAD_SHARED(t->iter_start) != t->off.iter)
			as_offcpu_done(t, now);
		else if (t->off.iter)
			as_offcpu_end_wait(t, now);     /* a wait in the iteration the process ends in */
	rcu_read_unlock();
	as_unlock(&look_lock);
}

static int any_iteration(void)
{
	struct as_thread *t;
	int any = 0;
	rcu_read_lock();
	cds_list_for_each_entry_rcu(t, &as_threads, node)
		any |= CMM_LOAD_SHARED(t->is_loop) && !CMM_LOAD_SHARED(t->dead) &&
		       CMM_LOAD_SHARED(t->iter_start) != 0;   /* as scan() sees them */
	rcu_read_unlock();
	return any;
}

/* Sleep until a loop thread starts an iteration (see the top comment). */
static void park(void)
{
	CMM_STORE_SHARED(as_wd_parked, 1);
	if (!use_membarrier || syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
		use_membarrier = 0;
		cmm_smp_mb();
	}
	int idle = !any_iteration() && !as_creds_pending();   /* a post wakes us: see preload/creds.c */
	if (idle) {
		struct timespec second = { 1, 0 };
		as_sys_futex(&as_wd_parked, FUTEX_WAIT_PRIVATE, 1, use_membarrier ? NULL : &second);
	}
	uatomic_set(&as_wd_parked, 0);
}

void as_watchdog_wake(void)
{
	if (uatomic_xchg(&as_wd_parked, 0) == 1) {
		int saved = errno;
		as_sys_futex(&as_wd_parked, FUTEX_WAKE_PRIVATE, 1, NULL);
		errno = saved;
	}
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
	as_sys_futex(&as_wd_parked, FUTEX_WAIT_PRIVATE, 0, &ts);   /* only a timeout ends it */
}

/* Looks in a row that must find the loops quiet before the watchdog parks
 * (20-30 ms after the last iteration at the default stall_ms).  Not more:
 * each look is a wake-up of the watchdog, and a park with its wake costs
 * about two of them plus the loop's futex wake (docs/performance.md), so a
 * longer wait would only make loops with pauses cost more. */
#define QUIET_LOOKS 2

pid_t as_wd_tid;

static void *watchdog_main(void *arg)
{
	CMM_STORE_SHARED(as_wd_tid, as_gettid());   /* not one of the program's threads */
	as_tls.internal = 1;
	as_fds_private(-1);
	uatomic_inc(&as_shim_threads);
	as_creds_join((int)(intptr_t)arg);
	uint64_t seen = 0;
	unsigned quiet = 0;
	for (;;) {
		as_creds_follow();
		uint64_t stall_ns = (uint64_t)as_cfg.stall_ms * 1000000u;
		if (!CMM_LOAD_SHARED(as_active)) {
			sleep_ns(100000000u);   /* after the final flush; exec may fail */
			continue;
		}
		double npt = CMM_LOAD_SHARED(as_ns_per_tick);
		uint64_t stall = (uint64_t)((double)stall_ns / npt), now = as_now(), next = now + stall, done = 0;
		int busy = scan(now, stall, &next, &done);
		/* not reset by a park: one that ends with nothing done (its
		 * timeout without membarrier) parks again at the next look */
		quiet = busy || done != seen ? 0 : quiet + 1;
		seen = done;
		if (quiet >= QUIET_LOOKS) {
			park();
			continue;       /* woken by an iteration start: look at it */
		}
		/* to the first one due; with every loop in its wait, none is
		 * due before stall_ms */
		uint64_t wait = (uint64_t)((double)(next - now) * npt);
		sleep_ns(wait < 1000000u ? 1000000u : wait);
	}
	return NULL;
}

static int pick_signal(void)
{
	for (int s = SIGRTMAX - 4; s >= SIGRTMAX - 12 && s > SIGRTMIN; s--) {
		struct sigaction old;
		if (real_sigaction(s, NULL, &old) == 0 && old.sa_handler == SIG_DFL && !(old.sa_flags & SA_SIGINFO))
			return s;
	}
	return 0;
}

static int start_thread(void)
{
	sigset_t all, old;
	pthread_t th;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	as_sys_sigmask(SIG_SETMASK, &all, &old);       /* it takes no signal */
	int seq = as_creds_spawn_begin();
	int r = pthread_create(&th, &attr, watchdog_main, (void *)(intptr_t)seq);
	as_creds_spawn_end(r == 0);
	as_sys_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (r == 0)
		pthread_setname_np(th, "asyncshim-wd");
	return r;
}

/* From the constructor, after recording started.  The signal serves the
 * kicks too (preload/raw.c), so it is installed with stacks=0 as well; the
 * watchdog thread needs stacks=1. */
void as_watchdog_start(void)
{
	if (sample_sig)
		return;
	real_sigaction = (int (*)(int, const struct sigaction *, struct sigaction *))as_resolve("sigaction");
	libc_nanosleep = (int (*)(const struct timespec *, struct timespec *))as_resolve("nanosleep");
	if (!real_sigaction)
		return;
	int sig = pick_signal();
	if (!sig) {
		if (as_cfg.stacks)
			as_warn("asyncshim: no free realtime signal; stalls will have no stacks");
		return;
	}
	if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0)
		use_membarrier = 1;
	prog_acts[0].sa_handler = SIG_DFL;
	CMM_STORE_SHARED(sample_sig, sig);     /* the collector may be reading it */
	if (install(NULL) != 0) {
		CMM_STORE_SHARED(sample_sig, 0);
		return;
	}
	if (!as_cfg.stacks)
		return;
	as_offcpu_init();
	if (start_thread() != 0) {
		as_warn("asyncshim: cannot start the stall watchdog; stalls will have no stacks");
		return;
	}
	running = 1;
}

/* A fork child has no watchdog thread: start its own.  The handler and the
 * program's recorded action are inherited with the memory. */
void as_watchdog_after_fork_child(void)
{
	as_wd_parked = 0;
	as_lock_init(&look_lock);   /* the parent's watchdog may have held it */
	struct as_thread *t;
	cds_list_for_each_entry(t, &as_threads, node)
		as_offcpu_forget(t);    /* the parent's watchdog's, half done */
	if (!running || !CMM_LOAD_SHARED(as_live))
		return;
	if (start_thread() != 0)
		running = 0;
}
