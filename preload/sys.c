/* sys.c — the runtime's own system calls and locks (why: preload/sys.h).
 *
 * The plain ones are libc's syscall() (not interposed), which already
 * turns -errno into -1 and errno.  The few that are more than a syscall
 * in libc (sigaction's restorer, pthread_join, dlclose) call the next
 * library's function through a pointer found once, never our own hook. */
#include "sys.h"
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <urcu/uatomic.h>

#ifdef __SANITIZE_THREAD__
#include <sanitizer/tsan_interface.h>
#endif

int as_sys_open(const char *path, int flags, mode_t mode)
{
	return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

ssize_t as_sys_read(int fd, void *buf, size_t len)
{
	return syscall(SYS_read, fd, buf, len);
}

ssize_t as_sys_pread(int fd, void *buf, size_t len, off_t off)
{
	return syscall(SYS_pread64, fd, buf, len, off);
}

ssize_t as_sys_write(int fd, const void *buf, size_t len)
{
	return syscall(SYS_write, fd, buf, len);
}

int as_sys_close(int fd)
{
	return (int)syscall(SYS_close, fd);
}

int as_sys_fcntl(int fd, int cmd, long arg)
{
	return (int)syscall(SYS_fcntl, fd, cmd, arg);
}

int as_sys_ioctl(int fd, unsigned long req, void *arg)
{
	return (int)syscall(SYS_ioctl, fd, req, arg);
}

int as_sys_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)
{
	return (int)syscall(SYS_prctl, option, a2, a3, a4, a5);
}

/* glibc's internal signals (SIGCANCEL 32, SIGSETXID 33): its
 * pthread_sigmask never blocks them, or setuid in a threaded program and
 * pthread_cancel would hang on the shim's threads. */
int as_sys_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	sigset_t copy;
	if (set && how != SIG_UNBLOCK) {
		copy = *set;
		sigdelset(&copy, 32);
		sigdelset(&copy, 33);
		set = &copy;
	}
	int saved = errno;
	long r = syscall(SYS_rt_sigprocmask, how, set, old, _NSIG / 8);
	int e = r == 0 ? 0 : errno;
	errno = saved;
	return e;
}

/* The next definition after the shim's own, found on first use. */
static void *next_fn(void **slot, const char *name)
{
	void *p = CMM_LOAD_SHARED(*slot);
	if (!p) {
		p = as_resolve(name);
		CMM_STORE_SHARED(*slot, p);
	}
	return p;
}

static void *next_sigaction, *next_join, *next_dlclose;

int as_sys_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	int (*fn)(int, const struct sigaction *, struct sigaction *) = next_fn(&next_sigaction, "sigaction");
	if (!fn) {
		errno = ENOSYS;
		return -1;
	}
	return fn(sig, act, old);
}

int as_sys_join(pthread_t th, void **ret)
{
	int (*fn)(pthread_t, void **) = next_fn(&next_join, "pthread_join");
	return fn ? fn(th, ret) : ENOSYS;
}

int as_sys_dlclose(void *handle)
{
	int (*fn)(void *) = next_fn(&next_dlclose, "dlclose");
	return fn ? fn(handle) : -1;
}

size_t as_sys_write_all(int fd, const void *buf, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = as_sys_write(fd, (const char *)buf + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	return off;
}

long as_sys_futex(int *addr, int op, int val, const struct timespec *ts)
{
	return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

void as_sys_exit(int status)
{
	for (;;)
		syscall(SYS_exit_group, status);
}

/* ---- the runtime's mutex (Drepper, "Futexes Are Tricky", mutex 3) ---- */
void as_lock_init(struct as_lock *l)
{
	CMM_STORE_SHARED(l->word, 0);
}

/* Sleeps while the word is 2, at most REL (NULL: no limit). */
static void lock_wait(struct as_lock *l, const struct timespec *rel)
{
	int saved = errno;
	as_sys_futex(&l->word, FUTEX_WAIT_PRIVATE, 2, rel);
	errno = saved;
}

static int lock_take(struct as_lock *l, unsigned ms, int timed)
{
	int32_t c = uatomic_cmpxchg(&l->word, 0, 1);
	if (c != 0) {
		struct timespec now, end = { 0, 0 };
		if (timed)
			clock_gettime(CLOCK_MONOTONIC, &end);
		end.tv_sec += ms / 1000;
		end.tv_nsec += (long)(ms % 1000) * 1000000L;
		if (end.tv_nsec >= 1000000000L) {
			end.tv_sec++;
			end.tv_nsec -= 1000000000L;
		}
		if (c != 2)
			c = uatomic_xchg(&l->word, 2);
		while (c != 0) {
			struct timespec rel = { 0, 0 };
			if (timed) {
				clock_gettime(CLOCK_MONOTONIC, &now);
				rel.tv_sec = end.tv_sec - now.tv_sec;
				rel.tv_nsec = end.tv_nsec - now.tv_nsec;
				if (rel.tv_nsec < 0) {
					rel.tv_sec--;
					rel.tv_nsec += 1000000000L;
				}
				if (rel.tv_sec < 0)
					return ETIMEDOUT;   /* the word stays 2: one spare wake */
			}
			lock_wait(l, timed ? &rel : NULL);
			c = uatomic_xchg(&l->word, 2);
		}
	}
#ifdef __SANITIZE_THREAD__
	__tsan_acquire(l);      /* TSan cannot see liburcu's asm atomics */
#endif
	return 0;
}

void as_lock(struct as_lock *l)
{
	lock_take(l, 0, 0);
}

int as_lock_timed(struct as_lock *l, unsigned ms)
{
	return lock_take(l, ms, 1);
}

void as_unlock(struct as_lock *l)
{
#ifdef __SANITIZE_THREAD__
	__tsan_release(l);
#endif
	if (uatomic_xchg(&l->word, 0) == 2) {
		int saved = errno;
		as_sys_futex(&l->word, FUTEX_WAKE_PRIVATE, 1, NULL);
		errno = saved;
	}
}
