/* lock.c — pthread_mutex_lock, pthread_rwlock_rdlock/wrlock,
 * pthread_cond_wait/timedwait, sem_wait/timedwait, pthread_join.
 *
 * Timed only on a loop thread with recording on, like every hook.  A mutex
 * or rwlock is taken uncontended millions of times a second, so there the
 * hook first tries the lock (no clock read when that succeeds) and times
 * only the contended path.  The try is a shortcut only when it took the
 * lock: any other answer (EBUSY, or an errorcheck mutex's owner asking
 * again, where lock says EDEADLK and trylock EBUSY) leaves the answer to
 * the real lock, so return values and errno are the real call's.
 * A lock the shim itself takes (its own code is the caller) is not the
 * program's wait: passed through.  glibc's internal locks (stdio, malloc)
 * never reach these symbols.
 *
 * pthread_cond_wait and pthread_cond_timedwait have two versions in glibc:
 * the current @@GLIBC_2.3.2 and a compatibility @GLIBC_2.2.5 for binaries
 * older than 2003.  The real ones are looked up by version; the hooks
 * (unversioned) are what a program's reference of either version binds to,
 * so such ancient binaries would get the current one.
 * Libraries' constructors lock mutexes before the TSan runtime is up
 * (liburcu-bp's does): in the TSan build these hooks are not instrumented. */
#include "shim.h"

#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>

AS_REAL(int, pthread_mutex_lock, (pthread_mutex_t *));
AS_REAL(int, pthread_mutex_trylock, (pthread_mutex_t *));
AS_REAL(int, pthread_rwlock_rdlock, (pthread_rwlock_t *));
AS_REAL(int, pthread_rwlock_tryrdlock, (pthread_rwlock_t *));
AS_REAL(int, pthread_rwlock_wrlock, (pthread_rwlock_t *));
AS_REAL(int, pthread_rwlock_trywrlock, (pthread_rwlock_t *));
AS_REAL(int, pthread_cond_wait, (pthread_cond_t *, pthread_mutex_t *));
AS_REAL(int, pthread_cond_timedwait, (pthread_cond_t *, pthread_mutex_t *, const struct timespec *));
AS_REAL(int, sem_wait, (sem_t *));
AS_REAL(int, sem_timedwait, (sem_t *, const struct timespec *));
AS_REAL(int, pthread_join, (pthread_t, void **));

/* the condition variables' current version, not whatever dlsym picks */
static AS_NO_TSAN void *resolve_cond(const char *name)
{
	int saved = errno;
	void *p = dlvsym(RTLD_NEXT, name, "GLIBC_2.3.2");
	errno = saved;
	return p ? p : as_resolve(name);
}

#define RESOLVE_COND(name)                                                  \
	do {                                                               \
		if (AS_UNLIKELY(!CMM_LOAD_SHARED(real_##name)))            \
			CMM_STORE_SHARED(real_##name, resolve_cond(#name)); \
	} while (0)

/* where a timed call is worth a try first */
static inline AS_NO_TSAN int timed_here(void)
{
	struct as_tls *me;
	return CMM_LOAD_SHARED(as_active) && (me = as_me())->loop && !me->busy;
}

#define FROM_SHIM as_pc_in_shim(__builtin_return_address(0))

/* The contended paths, kept out of line: the hooks' fast path stays short. */
static AS_NO_TSAN __attribute__((noinline)) int mutex_lock_timed(pthread_mutex_t *m, int shim)
{
	AS_TIMED_CALL_NB(int, AS_CALL_PTHREAD_MUTEX_LOCK, -1, shim, real_pthread_mutex_lock(m));
}

static AS_NO_TSAN __attribute__((noinline)) int rdlock_timed(pthread_rwlock_t *l, int shim)
{
	AS_TIMED_CALL_NB(int, AS_CALL_PTHREAD_RWLOCK_RDLOCK, -1, shim, real_pthread_rwlock_rdlock(l));
}

static AS_NO_TSAN __attribute__((noinline)) int wrlock_timed(pthread_rwlock_t *l, int shim)
{
	AS_TIMED_CALL_NB(int, AS_CALL_PTHREAD_RWLOCK_WRLOCK, -1, shim, real_pthread_rwlock_wrlock(l));
}

/* EOWNERDEAD: a robust mutex whose owner died, now taken by the try, as
 * the lock would have (and locking it again would deadlock). */
AS_EXPORT AS_NO_TSAN int pthread_mutex_lock(pthread_mutex_t *m)
{
	AS_RESOLVE(pthread_mutex_lock);
	if (AS_LIKELY(!timed_here()))
		return real_pthread_mutex_lock(m);
	AS_RESOLVE(pthread_mutex_trylock);
	int r = real_pthread_mutex_trylock(m);
	if (AS_LIKELY(r == 0) || r == EOWNERDEAD)
		return r;
	return mutex_lock_timed(m, FROM_SHIM);
}

AS_EXPORT AS_NO_TSAN int pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
	AS_RESOLVE(pthread_rwlock_rdlock);
	if (AS_LIKELY(!timed_here()))
		return real_pthread_rwlock_rdlock(l);
	AS_RESOLVE(pthread_rwlock_tryrdlock);
	if (AS_LIKELY(real_pthread_rwlock_tryrdlock(l) == 0))
		return 0;
	return rdlock_timed(l, FROM_SHIM);
}

AS_EXPORT AS_NO_TSAN int pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
	AS_RESOLVE(pthread_rwlock_wrlock);
	if (AS_LIKELY(!timed_here()))
		return real_pthread_rwlock_wrlock(l);
	AS_RESOLVE(pthread_rwlock_trywrlock);
	if (AS_LIKELY(real_pthread_rwlock_trywrlock(l) == 0))
		return 0;
	return wrlock_timed(l, FROM_SHIM);
}

AS_EXPORT AS_NO_TSAN int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
	RESOLVE_COND(pthread_cond_wait);
	AS_TIMED_CALL_NB(int, AS_CALL_PTHREAD_COND_WAIT, -1, FROM_SHIM, real_pthread_cond_wait(c, m));
}

AS_EXPORT AS_NO_TSAN int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *abs)
{
	RESOLVE_COND(pthread_cond_timedwait);
	AS_TIMED_CALL_NB(int, AS_CALL_PTHREAD_COND_TIMEDWAIT, -1, FROM_SHIM, real_pthread_cond_timedwait(c, m, abs));
}

AS_EXPORT AS_NO_TSAN int sem_wait(sem_t *s)
{
	AS_RESOLVE(sem_wait);
	AS_TIMED_CALL_NB(int, AS_CALL_SEM_WAIT, -1, FROM_SHIM, real_sem_wait(s));
}

AS_EXPORT AS_NO_TSAN int sem_timedwait(sem_t *s, const struct timespec *abs)
{
	AS_RESOLVE(sem_timedwait);
	AS_TIMED_CALL_NB(int, AS_CALL_SEM_TIMEDWAIT, -1, FROM_SHIM, real_sem_timedwait(s, abs));
}

AS_EXPORT AS_NO_TSAN int pthread_join(pthread_t th, void **ret)
{
	AS_RESOLVE(pthread_join);
	AS_TIMED_CALL_NB(int, AS_CALL_PTHREAD_JOIN, -1, FROM_SHIM, real_pthread_join(th, ret));
}
