/* sys.h — the runtime's own system calls and locks (preload/sys.c).
 *
 * preload/ and collector/ never call a libc function the shim interposes
 * (tests/test_runtime_isolation.py checks their objects with nm): their
 * open, read, write, close, fcntl, signal masks and handlers, locks and
 * joins go through these instead, so none of the shim's own work lands in
 * a hook, as the sanitizer runtimes use their internal_* calls.
 * Each keeps libc's convention: -1 and errno on failure (as_sys_sigmask,
 * as_sys_join and the locks: the error number, like pthread's). */
#ifndef ASYNCSHIM_SYS_H
#define ASYNCSHIM_SYS_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

int as_sys_open(const char *path, int flags, mode_t mode);
ssize_t as_sys_read(int fd, void *buf, size_t len);
ssize_t as_sys_pread(int fd, void *buf, size_t len, off_t off);
ssize_t as_sys_write(int fd, const void *buf, size_t len);
/* All LEN bytes, in as many writes as it takes (EINTR retried); fewer when
 * a write fails (errno its) or writes nothing.  Returns the bytes written. */
size_t as_sys_write_all(int fd, const void *buf, size_t len);
int as_sys_close(int fd);
int as_sys_fcntl(int fd, int cmd, long arg);
int as_sys_ioctl(int fd, unsigned long req, void *arg);
int as_sys_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);
/* pthread_sigmask: glibc's own two signals (cancellation, setxid) stay unblocked */
int as_sys_sigmask(int how, const sigset_t *set, sigset_t *old);
/* sigaction through the next library's (libc's, or a sanitizer runtime's,
 * which must see every handler) */
int as_sys_sigaction(int sig, const struct sigaction *act, struct sigaction *old);
__attribute__((noreturn)) void as_sys_exit(int status);      /* _exit: exit_group */
int as_sys_join(pthread_t th, void **ret);                    /* pthread_join */
int as_sys_dlclose(void *handle);
/* futex(2) on a private word; TS relative (NULL: no limit) */
long as_sys_futex(int *addr, int op, int val, const struct timespec *ts);

/* The runtime's mutex: a futex word (0 free, 1 held, 2 held with waiters),
 * not a pthread mutex, whose lock function the shim interposes.  Usable
 * before the constructor and in a fork child after as_lock_init. */
struct as_lock {
	int32_t word;
};
#define AS_LOCK_INIT { 0 }
void as_lock_init(struct as_lock *l);
void as_lock(struct as_lock *l);
/* Gives up after MS milliseconds: 0 taken, ETIMEDOUT not. */
int as_lock_timed(struct as_lock *l, unsigned ms);
void as_unlock(struct as_lock *l);

#endif
