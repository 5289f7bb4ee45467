/* raw.c — timed calls that make their syscall themselves, and what keeps
 * pthread_cancel working for them (the design: preload/shim.h, "raw
 * syscalls"). */
#include "runtime.h"

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#include <urcu-bp.h>
#include <urcu/rculist.h>

int as_raw_ok AS_HOT_DATA;

/* One per inlined as_raw_syscall: from the flag check to the end of the
 * syscall instruction, and the pad that returns AS_RAW_KICKED.  Weak: a
 * build that makes no raw syscall (TSan) has no such section. */
struct raw_site {
	uintptr_t begin, end, pad;
};
extern const struct raw_site __start_as_raw_sites[] __attribute__((weak)) AS_HIDDEN;
extern const struct raw_site __stop_as_raw_sites[] __attribute__((weak)) AS_HIDDEN;

/* The functions whose syscall a hook makes itself.  When a library
 * preloaded after the shim interposes one of them (a sandbox, a proxy, a
 * fake clock, bench/libstub.c), the hooks must call it: no raw syscalls. */
static const char *const raw_names[] = {
	"read", "__read_chk", "write", "pread", "pread64", "pwrite", "pwrite64", "readv", "writev", "recv",
	"recvfrom", "recvmsg", "send", "sendto", "sendmsg", "epoll_wait", "epoll_pwait", "poll",
};

static int libc_is_next(void)
{
	void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	if (!libc)
		return 0;
	int ok = 1;
	for (size_t i = 0; ok && i < sizeof(raw_names) / sizeof(raw_names[0]); i++)
		ok = as_resolve(raw_names[i]) == dlsym(libc, raw_names[i]);
	as_sys_dlclose(libc);
	return ok;
}

/* From the constructor, once the signal is in place (or not). */
void as_raw_start(void)
{
	const struct raw_site *first = __start_as_raw_sites, *end = __stop_as_raw_sites;
	int saved = errno;
	int ok = as_kick_signal() != 0 && first && first != end && libc_is_next();
	errno = saved;
	CMM_STORE_SHARED(as_raw_ok, ok);
}

/* When a thread becomes a loop: may its timed calls be raw?  Only while
 * the kick can reach it, so not while it blocks the signal.  Once per
 * thread; keeps errno. */
int as_raw_thread_ok(void)
{
	int sig = as_kick_signal();
	if (!sig || !CMM_LOAD_SHARED(as_raw_ok))
		return 0;
	int saved = errno;
	uint64_t mask = 0;
	long r = syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &mask, sizeof(mask));
	errno = saved;
	return r == 0 && !(mask >> (sig - 1) & 1);
}

/* The program changed this thread's mask (after a successful call).
 * A thread that is no loop yet is checked when it becomes one.  A change
 * inside a shim slow path (busy: a fault handler of the program's) is
 * undone by the quiet section's end, so it is ignored.  Not followed: masks
 * put back without these calls (a signal handler's return, siglongjmp,
 * setcontext), so a handler that unblocks our signal when the code it
 * interrupted blocked it leaves as_tls.raw wrong until the next change. */
void as_raw_mask_changed(int how, const void *set)
{
	if (!set || !as_tls.loop || as_tls.busy)
		return;
	int sig = as_kick_signal();
	if (!sig)
		return;
	int in = sigismember((const sigset_t *)set, sig) == 1;
	if (how == SIG_SETMASK)
		as_tls.raw = !in;
	else if (how == SIG_BLOCK && in)
		as_tls.raw = 0;
	else if (how == SIG_UNBLOCK && in)
		as_tls.raw = 1;
}

/* After the program's pthread_cancel(th) succeeded (raw syscalls are
 * already off): a target inside a raw syscall must leave it. */
void as_raw_cancel(pthread_t th)
{
	if (pthread_equal(th, pthread_self()))
		return;                 /* it is here, not in a syscall */
	struct as_thread *t;
	rcu_read_lock();
	cds_list_for_each_entry_rcu(t, &as_threads, node) {
		if (!CMM_LOAD_SHARED(t->dead) && t->tls && pthread_equal(t->pthread, th)) {
			as_kick(t);
			break;
		}
	}
	rcu_read_unlock();
}

/* In the kick's handler, on the kicked thread: move it to the pad if it
 * is between the flag check and the end of a raw syscall.  A syscall the
 * signal interrupted is either about to restart (pc back on the syscall
 * instruction: SA_RESTART) or returns EINTR (pc at its end). */
void as_raw_redirect(void *ucontext)
{
	greg_t *g = ((ucontext_t *)ucontext)->uc_mcontext.gregs;
	uintptr_t pc = (uintptr_t)g[REG_RIP];
	for (const struct raw_site *s = __start_as_raw_sites; s && s < __stop_as_raw_sites; s++) {
		if ((pc >= s->begin && pc < s->end) || (pc == s->end && g[REG_RAX] == -EINTR)) {
			g[REG_RIP] = (greg_t)s->pad;
			return;
		}
	}
}
