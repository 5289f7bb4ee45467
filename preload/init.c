/* init.c — start-up, clock, options, fork and termination handling.
 *
 * Everything expensive happens here, once: resolving real functions,
 * calibrating the TSC, creating the trace file, starting the collector. */
#include "runtime.h"
#include "span.h"
#include "ctl.h"
#include "../format/trace_format.h"

#include <cpuid.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <urcu-bp.h>

struct as_config as_cfg;
int as_active AS_HOT_DATA;
int as_live;
pid_t as_pid;
int as_shim_threads;
int as_main_exited;
int as_use_tsc AS_HOT_DATA;
uint64_t as_block_ticks AS_HOT_DATA = UINT64_MAX;
uint64_t as_tsc0, as_mono0;
double as_ns_per_tick = 1.0;

static __thread int resolving __attribute__((tls_model("initial-exec")));

uint64_t as_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The stderr this process image started with, by identity.  The shim's
 * messages go there or nowhere: never into whatever the program has put at
 * fd 2 since (a daemon's journal).  The shim keeps no fd of its own for
 * it in the program's table, where the program would see it (an fd scan,
 * a table grown past the program's own size); its threads keep the one
 * at 2 in their own tables (preload/fds.c), and the program's threads
 * write to 2 while it is still that file. */
static dev_t stderr_dev;
static ino_t stderr_ino;
static int stderr_known;

static void stderr_init(void)
{
	struct stat st;
	stderr_known = fstat(2, &st) == 0;
	stderr_dev = st.st_dev;
	stderr_ino = st.st_ino;
}

int as_stderr_is_start(void)
{
	struct stat st;
	int saved = errno;
	int same = stderr_known && fstat(2, &st) == 0 && st.st_dev == stderr_dev && st.st_ino == stderr_ino;
	errno = saved;
	return same;
}

void as_warn(const char *fmt, ...)
{
	char buf[512];
	int saved = errno;
	if (!as_stderr_is_start())
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	/* raw syscall: our own write hook must not see it */
	if (syscall(SYS_write, 2, buf, (size_t)n) < 0)
		(void)0;
	errno = saved;
}

/* dlsym(RTLD_NEXT) can itself run code that reaches a hook (an interposed
 * dlsym or malloc calling write, say), which then resolves its own real
 * function: that nested lookup is allowed, a few levels deep; only a lookup
 * that keeps recursing gets NULL.  The depth is written through volatile
 * stores: for a plain static, GCC drops the store before dlsym(), as if no
 * call could come back here (it did, and the guard never worked). */
AS_NO_TSAN void *as_resolve(const char *name)
{
	if (CMM_LOAD_SHARED(resolving) >= 8)
		return NULL;
	CMM_STORE_SHARED(resolving, resolving + 1);
	int saved = errno;
	void *p = dlsym(RTLD_NEXT, name);
	errno = saved;
	CMM_STORE_SHARED(resolving, resolving - 1);
	return p;
}

/* The TSC is used when the CPU says it is constant and non-stop; the tick
 * rate is estimated here (good to ~1%) for the hot-path threshold and
 * refined by the collector, which converts every tick to ns exactly. */
static void clock_init(void)
{
	unsigned a, b, c, d;
	int invariant = 0;
	if (__get_cpuid(0x80000007, &a, &b, &c, &d))
		invariant = (d >> 8) & 1;
	as_mono0 = as_mono_ns();
	if (!invariant) {
		as_use_tsc = 0;
		as_tsc0 = as_mono0;
		as_ns_per_tick = 1.0;
		return;
	}
	uint64_t m0 = as_mono_ns(), t0 = __rdtsc(), m1, t1;
	do {
		m1 = as_mono_ns();
		t1 = __rdtsc();
	} while (m1 - m0 < 200000);     /* 200 us */
	as_ns_per_tick = (double)(m1 - m0) / (double)(t1 - t0);
	as_tsc0 = t0 - (uint64_t)((double)(m0 - as_mono0) / as_ns_per_tick);
	as_use_tsc = 1;
}

void as_set_block_threshold(void)
{
	/* 3% under the real threshold: the collector filters exactly */
	double ticks = (double)as_cfg.block_ms * 1e6 * 0.97 / as_ns_per_tick;
	CMM_STORE_SHARED(as_block_ticks, (uint64_t)ticks);
}

static enum as_fd_kind fd_kind(int fd)
{
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0)
		return AS_FD_NONE;
	if (S_ISCHR(st.st_mode)) {
		struct termios tio;
		return as_sys_ioctl(fd, TCGETS, &tio) == 0 ? AS_FD_TTY : AS_FD_OTHER;
	}
	return as_fd_kind_of(&st);
}

/* Slow path: the call on a loop thread already took >= ~block_ms. */
/* While the shim works on a thread (busy), hooked calls that a program
 * signal handler makes on it would pass through unrecorded.  For these
 * short, already-slow moments (stack capture) the program's asynchronous
 * signals wait; faults stay deliverable. */
void as_quiet_begin(sigset_t *old)
{
	sigset_t set;
	sigfillset(&set);
	sigdelset(&set, SIGSEGV);
	sigdelset(&set, SIGBUS);
	sigdelset(&set, SIGILL);
	sigdelset(&set, SIGFPE);
	sigdelset(&set, SIGTRAP);
	/* busy: what libunwind calls through its PLT, and a fault handler of
	 * the program that runs here, is not recorded nor re-enters the shim */
	as_tls.busy = 1;
	as_sys_sigmask(SIG_BLOCK, &set, old);
}

void as_quiet_end(const sigset_t *old)
{
	as_sys_sigmask(SIG_SETMASK, old, NULL);
	as_tls.busy = 0;
}

struct blocking {
	struct as_thread *t;
	int call, fd;
	uint64_t t0, t1;
};

/* On the shim's own stack: the program's may be a small coroutine's. */
static void blocking_slow(void *arg)
{
	const struct blocking *b = arg;
	struct as_thread *t = b->t;
	int call = b->call, fd = b->fd;
	uint64_t t0 = b->t0, t1 = b->t1;
	int saved = errno;
	sigset_t old;
	as_quiet_begin(&old);
	as_span_note(t);        /* the span and request it was made in */
	uint64_t c0 = as_now();
	struct as_record *r = as_reserve_stack(t, NULL);   /* with its stack */
	CMM_STORE_SHARED(t->stack_ticks, t->stack_ticks + (as_now() - c0));   /* the shim's own cost */
	if (r) {
		r->kind = AS_REC_BLOCK;
		r->call = (uint8_t)call;
		r->fd = fd;
		r->fd_kind = (uint8_t)fd_kind(fd);
		r->ts = t0;
		r->dur = t1 - t0;
		as_commit(t);
	}
	as_quiet_end(&old);
	errno = saved;
}

void as_blocking(struct as_thread *t, int call, int fd, uint64_t t0, uint64_t t1)
{
	struct blocking b = { t, call, fd, t0, t1 };
	as_on_own_stack(blocking_slow, &b);
}

/* ---- deaths by signal ----
 * While the program leaves a deadly signal at SIG_DFL, the shim catches it,
 * has the collector write the trace, then dies of the same signal with the
 * default action (same exit status, same core dump).  Faults (SIGSEGV...)
 * re-raised from the handler are delivered as soon as it returns.  The
 * program never sees our handler: the sigaction/signal hooks report SIG_DFL
 * and hand the signal back the moment the program installs its own. */
static int owns_signal[65];
static void *own_handler[65];       /* what the shim installed for it */
static const int deadly[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };

/* The end record's reason: "SIGPIPE", "SIGRTMIN+3"...; filled before the
 * handler is installed (the handler only reads it). */
static char death_names[65][24];

static void name_signal(int sig)
{
	const char *abbrev = sigabbrev_np(sig);
	if (abbrev)
		snprintf(death_names[sig], sizeof(death_names[sig]), "SIG%s", abbrev);
	else if (sig >= SIGRTMIN)
		snprintf(death_names[sig], sizeof(death_names[sig]), "SIGRTMIN+%d", sig - SIGRTMIN);
	else
		snprintf(death_names[sig], sizeof(death_names[sig]), "signal %d", sig);
}

static void death_handler(int sig)
{
	int saved = errno;
	as_tls.busy = 1;
	as_collector_final(sig > 0 && sig < 65 && death_names[sig][0] ? death_names[sig] : "signal");
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	as_sys_sigaction(sig, &dfl, NULL);
	raise(sig);
	errno = saved;
}

static void take_signal(int sig)
{
	struct sigaction old, sa;
	if (sig <= 0 || sig >= 65 || as_signal_owned(sig) || as_sample_signal(sig))
		return;         /* the shim's own already (ctl, stall sampling) */
	if (as_sys_sigaction(sig, NULL, &old) != 0 || old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO))
		return;
	name_signal(sig);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = death_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART | SA_NODEFER;
	if (as_sys_sigaction(sig, &sa, NULL) == 0)
		as_signal_own(sig, (void *)death_handler);
}

/* Every other signal whose default action ends the process (terminate or
 * core: SIGPIPE of `yes | head -1`, SIGALRM, SIGUSR1, SIGXCPU, realtime
 * signals...), so such a death too leaves a complete trace and no rings in
 * /dev/shm.  Taken last: the shim's own signals (ctl, flight, stall
 * sampling) pick theirs among the free ones first.  A signal the program
 * blocks to sigwait() for, or reads from a signalfd, stays pending and
 * reaches it as before: a handler changes nothing for a blocked signal. */
static void take_fatal_signals(void)
{
	static const int more[] = { SIGTRAP, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGSTKFLT, SIGXCPU, SIGXFSZ,
				    SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSYS };
	for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++)
		take_signal(more[i]);
	for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++)
		take_signal(sig);
}

/* SIG now has the shim's HANDLER, installed over SIG_DFL (preload/ctl.c too). */
AS_NO_TSAN void as_signal_own(int sig, void *handler)
{
	if (sig > 0 && sig < 65) {
		own_handler[sig] = handler;
		owns_signal[sig] = 1;
	}
}

/* The handler the shim installed for SIG (hooks/signal.c reports SIG_DFL
 * for it). */
AS_NO_TSAN void *as_own_handler(int sig)
{
	return sig > 0 && sig < 65 ? own_handler[sig] : NULL;
}

AS_NO_TSAN int as_signal_owned(int sig)
{
	return sig > 0 && sig < 65 && owns_signal[sig];
}

AS_NO_TSAN void as_signal_release(int sig)
{
	if (sig > 0 && sig < 65)
		owns_signal[sig] = 0;
}

AS_NO_TSAN void *as_term_handler_addr(void)
{
	return (void *)death_handler;
}

/* ---- fork ---- */
static int fork_from_main;

static void before_fork(void)
{
	as_collector_lock();    /* first: one fork at a time from here */
	fork_from_main = as_gettid() == getpid();
	as_registry_lock();
	as_rings_before_fork();
	urcu_bp_before_fork();
}

static void after_fork_parent(void)
{
	urcu_bp_after_fork_parent();
	as_registry_unlock();
	as_collector_unlock();
}

static void after_fork_child(void)
{
	as_pid = getpid();
	CMM_STORE_SHARED(as_main_exited, !fork_from_main);
	as_creds_after_fork_child();
	urcu_bp_after_fork_child();
	as_registry_unlock();
	as_collector_unlock();
	as_collector_after_fork_child();
	as_watchdog_after_fork_child();
	as_gate_after_fork_child();
	as_ctl_after_fork_child();
}

/* Children inherit LD_PRELOAD and so the shim.  follow_exec=0 removes the
 * shim from LD_PRELOAD now, so nothing this process starts is shimmed. */
static void stop_following_exec(void)
{
	Dl_info info;
	const char *pre = getenv("LD_PRELOAD");
	if (!pre || !dladdr((void *)stop_following_exec, &info) || !info.dli_fname)
		return;
	char out[4096] = "", item[PATH_MAX];
	size_t used = 0;
	while (*pre) {
		size_t n = strcspn(pre, ": ");
		if (n && n < sizeof(item)) {
			memcpy(item, pre, n);
			item[n] = '\0';
			const char *base = strrchr(item, '/');
			base = base ? base + 1 : item;
			if (strcmp(item, info.dli_fname) && strcmp(base, "libasyncshim.so"))
				used += (size_t)snprintf(out + used, sizeof(out) - used, "%s%s", used ? ":" : "", item);
		}
		pre += n;
		pre += *pre != '\0';
		if (used >= sizeof(out))
			return;
	}
	if (used)
		setenv("LD_PRELOAD", out, 1);
	else
		unsetenv("LD_PRELOAD");
}

/* Exec'd children resolve a relative out= against their own cwd; pass them
 * the absolute prefix so every trace of one run lands in one place. */
static void export_out(void)
{
	char opts[sizeof(as_cfg.raw) + PATH_MAX + 8];
	snprintf(opts, sizeof(opts), "%s%sout=%s", as_cfg.raw, as_cfg.raw[0] ? ":" : "", as_cfg.out);
	setenv("ASYNCSHIM_OPTIONS", opts, 1);
}

static int resolve_out(void)
{
	if (as_cfg.out[0] == '/')
		return 0;
	char cwd[PATH_MAX], rel[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return -1;
	memcpy(rel, as_cfg.out, sizeof(rel));
	const char *r = rel;
	if (r[0] == '.' && r[1] == '/')
		r += 2;
	if ((size_t)snprintf(as_cfg.out, sizeof(as_cfg.out), "%s/%s", cwd, r) >= sizeof(as_cfg.out))
		return -1;
	return 0;
}

__attribute__((constructor)) static void as_init(void)
{
	char err[256];
	const char *env = getenv("ASYNCSHIM_OPTIONS");
	const char *recover = getenv("ASYNCSHIM_RECOVER");

	if (recover)    /* a helper process of asyncshim recover: only that */
		as_sys_exit(as_recover(recover, getenv("ASYNCSHIM_RECOVER_TRACE")));
	stderr_init();

	strcpy(as_cfg.out, "./asyncshim");
	as_cfg.block_ms = AS_DEFAULT_BLOCK_MS;
	as_cfg.stall_ms = AS_DEFAULT_STALL_MS;
	as_cfg.stacks = 1;
	as_cfg.stack_depth = 32;
	as_cfg.buffer_kb = 1024;
	as_cfg.enabled = 1;
	as_cfg.flush_ms = 1000;
	as_cfg.drain_ms = 20;
	as_cfg.follow_exec = 1;
	as_cfg.exitcode = 66;
	as_cfg.flight_mb = 16;
	as_cfg.trigger_ms = 100;
	as_cfg.flight_after_ms = 100;
	as_cfg.flight_signal = SIGUSR2;
	as_cfg.ctl_signal = (unsigned)(SIGRTMAX - AS_CTL_DEFAULT_SIGNAL_FROM_MAX);
	if (env)
		snprintf(as_cfg.raw, sizeof(as_cfg.raw), "%s", env);
	if (as_parse_options(env, &as_cfg, err, sizeof(err)) != 0) {
		as_warn("asyncshim: %s in ASYNCSHIM_OPTIONS; asyncshim disabled", err);
		return;
	}
	if (!as_cfg.enabled)
		return;
	if (as_gate_init(err, sizeof(err)) != 0) {
		as_warn("asyncshim: %s; asyncshim disabled", err);
		return;
	}
	int relative = as_cfg.out[0] != '/';
	if (resolve_out() != 0) {
		as_warn("asyncshim: cannot resolve out= path; asyncshim disabled");
		return;
	}
	as_pid = getpid();
	if (!as_cfg.follow_exec)
		stop_following_exec();
	else if (relative)
		export_out();
	clock_init();
	as_set_block_threshold();
	as_span_init();         /* before as_buffer_init: see there */
	as_buffer_init();
	as_stack_init();
	if (as_trace_create() != 0)
		return;
	pthread_atfork(before_fork, after_fork_parent, after_fork_child);
	for (size_t i = 0; i < sizeof(deadly) / sizeof(deadly[0]); i++)
		take_signal(deadly[i]);
	if (as_collector_start() != 0) {
		as_warn("asyncshim: cannot start the collector thread; asyncshim disabled");
		return;
	}
	CMM_STORE_SHARED(as_live, 1);
	CMM_STORE_SHARED(as_active, 1);
	as_ctl_start();
	as_watchdog_start();
	as_raw_start();
	take_fatal_signals();
}

__attribute__((destructor)) static void as_fini(void)
{
	as_span_thread_flush();
	as_collector_final("exit");
	as_gate_at_exit();
}
