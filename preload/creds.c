/* creds.c — the shim's threads follow what the program does to the
 * credentials of one thread: prctl(PR_SET_KEEPCAPS, PR_SET_SECUREBITS,
 * PR_CAPBSET_DROP, PR_CAP_AMBIENT) and capset (hooks/process.c).
 *
 * Why: capabilities, keep-caps and the bounding set are per thread, but
 * glibc makes every set*id call on all threads (its SIGSETXID broadcast)
 * and aborts the process when one thread's call fails where another's
 * succeeded.  A root program that keeps its capabilities across a uid
 * change (setpriv --reuid=... does: PR_SET_KEEPCAPS, setresuid, capset,
 * setresgid) left the shim's threads without CAP_SETGID, so glibc aborted
 * it at setresgid.  The shim's threads now make the same call right after
 * the program's thread made it, so each thread of the process holds what
 * the program's thread holds: never more (a thread of the shim must not
 * keep a right the program gave up), and enough to follow glibc.
 *
 * The calling thread posts the call and waits (bounded) until every
 * following thread made it: the collector and the watchdog look for it
 * each time they wake, and are woken for it. */
#include "runtime.h"

#include <linux/capability.h>
#include <linux/futex.h>
#include <pthread.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct cred_call {
	int capset;                         /* else a prctl */
	unsigned long arg[5];
	struct __user_cap_header_struct hdr;
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
};

static struct as_lock post_mutex = AS_LOCK_INIT;
static struct cred_call posted;
static int posted_seq;           /* bumped per call posted */
static int made;                 /* futex: followers that made the posted call */
static int followers;            /* shim threads that follow */
static __thread int seen_seq __attribute__((tls_model("initial-exec")));

/* Around pthread_create of a shim thread: it is born with the creator's
 * credentials, so it follows every call posted after that, and none can be
 * posted in between.  Returns what the thread passes to as_creds_join. */
int as_creds_spawn_begin(void)
{
	as_lock(&post_mutex);
	__atomic_fetch_add(&followers, 1, __ATOMIC_SEQ_CST);
	return __atomic_load_n(&posted_seq, __ATOMIC_SEQ_CST);
}

void as_creds_spawn_end(int created)
{
	if (!created)
		__atomic_fetch_sub(&followers, 1, __ATOMIC_SEQ_CST);
	as_unlock(&post_mutex);
}

/* The shim thread, at its start. */
void as_creds_join(int seq)
{
	seen_seq = seq;
}

void as_creds_leave(void)
{
	__atomic_fetch_sub(&followers, 1, __ATOMIC_SEQ_CST);
}

int as_creds_pending(void)
{
	return __atomic_load_n(&posted_seq, __ATOMIC_SEQ_CST) != seen_seq;
}

/* A shim thread, whenever it wakes: make the posted call, if new. */
void as_creds_follow(void)
{
	if (!as_creds_pending())
		return;
	int saved = errno;
	seen_seq = __atomic_load_n(&posted_seq, __ATOMIC_SEQ_CST);
	if (posted.capset) {
		struct __user_cap_header_struct hdr = posted.hdr;
		hdr.pid = 0;            /* this thread */
		syscall(SYS_capset, &hdr, posted.data);
	} else {
		syscall(SYS_prctl, posted.arg[0], posted.arg[1], posted.arg[2], posted.arg[3], posted.arg[4]);
	}
	__atomic_fetch_add(&made, 1, __ATOMIC_SEQ_CST);
	as_sys_futex(&made, FUTEX_WAKE_PRIVATE, 1, NULL);
	errno = saved;
}

void as_collector_wake(void);

/* The program's thread, after its call succeeded. */
static void post(const struct cred_call *call)
{
	int saved = errno;
	as_lock(&post_mutex);
	posted = *call;
	__atomic_store_n(&made, 0, __ATOMIC_SEQ_CST);
	__atomic_fetch_add(&posted_seq, 1, __ATOMIC_SEQ_CST);
	as_collector_wake();
	as_watchdog_wake();
	/* bounded: a shim thread stuck elsewhere must not hang the program */
	for (int i = 0; i < 200; i++) {
		int n = __atomic_load_n(&made, __ATOMIC_SEQ_CST);
		if (n >= __atomic_load_n(&followers, __ATOMIC_SEQ_CST))
			break;
		struct timespec ts = { 0, 10000000 };
		as_sys_futex(&made, FUTEX_WAIT_PRIVATE, n, &ts);
	}
	as_unlock(&post_mutex);
	errno = saved;
}

static int per_thread_option(int option, unsigned long arg2)
{
	switch (option) {
	case PR_SET_KEEPCAPS:
	case PR_SET_SECUREBITS:
	case PR_CAPBSET_DROP:
		return 1;
	case PR_CAP_AMBIENT:
		return arg2 != PR_CAP_AMBIENT_IS_SET;
	default:
		return 0;
	}
}

void as_creds_prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)
{
	if (as_tls.internal || !per_thread_option(option, arg2) || !__atomic_load_n(&followers, __ATOMIC_SEQ_CST))
		return;
	struct cred_call call;
	memset(&call, 0, sizeof(call));
	call.arg[0] = (unsigned long)option;
	call.arg[1] = arg2;
	call.arg[2] = arg3;
	call.arg[3] = arg4;
	call.arg[4] = arg5;
	post(&call);
}

/* Only a capset on the calling thread itself: capset on another thread is
 * refused by the kernel. */
void as_creds_capset(const void *hdr, const void *data)
{
	const struct __user_cap_header_struct *h = hdr;
	if (as_tls.internal || !h || !data || (h->pid != 0 && h->pid != as_gettid()) ||
	    !__atomic_load_n(&followers, __ATOMIC_SEQ_CST))
		return;
	struct cred_call call;
	memset(&call, 0, sizeof(call));
	call.capset = 1;
	call.hdr = *h;
	/* version 1 carries one 32-bit word, versions 2 and 3 two */
	size_t words = h->version == _LINUX_CAPABILITY_VERSION_1 ? 1 : 2;
	memcpy(call.data, data, words * sizeof(call.data[0]));
	post(&call);
}

/* A fork child has none of the parent's shim threads (yet). */
void as_creds_after_fork_child(void)
{
	as_lock_init(&post_mutex);
	followers = 0;
}
