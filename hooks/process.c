/* process.c — exec family, vfork, _exit: the points where a process image
 * ends without running destructors.
 *
 * Before exec the trace is written (end reason "exec"); if exec fails the
 * shim goes on recording into the same file.  _exit/_Exit write it too.
 * vfork is served by fork: the shim's state is per process, and a vfork
 * child shares the parent's memory, so letting it run shim code would
 * corrupt the parent.  (POSIX allows vfork to be fork.)  A child made with
 * clone(CLONE_VM) by other code is recognised by its pid and left alone.
 * pthread_cancel: see preload/raw.c. */
#include "shim.h"

#include <stdarg.h>
#include <stdlib.h>
#include <pthread.h>
#include <unistd.h>

AS_REAL(int, execve, (const char *, char *const[], char *const[]));
AS_REAL(int, execv, (const char *, char *const[]));
AS_REAL(int, execvp, (const char *, char *const[]));
AS_REAL(int, execvpe, (const char *, char *const[], char *const[]));
AS_REAL(int, fexecve, (int, char *const[], char *const[]));
AS_REAL(void, _exit, (int));
AS_REAL(void, _Exit, (int));
AS_REAL(void, pthread_exit, (void *));
AS_REAL(int, pthread_cancel, (pthread_t));
AS_REAL(int, prctl, (int, unsigned long, unsigned long, unsigned long, unsigned long));
AS_REAL(int, capset, (void *, void *));

extern char **environ;

/* Returns 1 when the trace was written and must be resumed on failure. */
static int before_exec(void)
{
	if (!CMM_LOAD_SHARED(as_live) || getpid() != as_pid)
		return 0;
	as_collector_final("exec");
	return 1;
}

static int after_failed_exec(int flushed, int r)
{
	int saved = errno;
	if (flushed)
		as_collector_resume();
	errno = saved;
	return r;
}

AS_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	AS_RESOLVE(execve);
	int f = before_exec();
	return after_failed_exec(f, real_execve(path, argv, envp));
}

AS_EXPORT int execv(const char *path, char *const argv[])
{
	AS_RESOLVE(execv);
	int f = before_exec();
	return after_failed_exec(f, real_execv(path, argv));
}

AS_EXPORT int execvp(const char *file, char *const argv[])
{
	AS_RESOLVE(execvp);
	int f = before_exec();
	return after_failed_exec(f, real_execvp(file, argv));
}

AS_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	AS_RESOLVE(execvpe);
	int f = before_exec();
	return after_failed_exec(f, real_execvpe(file, argv, envp));
}

AS_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	AS_RESOLVE(fexecve);
	int f = before_exec();
	return after_failed_exec(f, real_fexecve(fd, argv, envp));
}

/* execl, execle, execlp: collect the variadic argv, then the v-form hook. */
#define COLLECT_ARGS(arg0, last_ap_action)                                  \
	va_list ap;                                                       \
	size_t n = 1;                                                     \
	va_start(ap, arg0);                                               \
	while (va_arg(ap, char *))                                        \
		n++;                                                      \
	va_end(ap);                                                       \
	char *argv[n + 1];                                                \
	argv[0] = (char *)arg0;                                           \
	va_start(ap, arg0);                                               \
	for (size_t i = 1; i <= n; i++)                                   \
		argv[i] = va_arg(ap, char *);                             \
	last_ap_action;                                                   \
	va_end(ap)

AS_EXPORT int execl(const char *path, const char *arg, ...)
{
	COLLECT_ARGS(arg, (void)0);
	return execv(path, argv);
}

AS_EXPORT int execlp(const char *file, const char *arg, ...)
{
	COLLECT_ARGS(arg, (void)0);
	return execvp(file, argv);
}

AS_EXPORT int execle(const char *path, const char *arg, ...)
{
	char **envp;
	COLLECT_ARGS(arg, envp = va_arg(ap, char **));
	return execve(path, argv, envp);
}

AS_EXPORT pid_t vfork(void)
{
	return fork();
}

AS_EXPORT void _exit(int status)
{
	AS_RESOLVE(_exit);
	if (CMM_LOAD_SHARED(as_live) && getpid() == as_pid)
		as_collector_final("_exit");
	real__exit(status);
	__builtin_unreachable();
}

AS_EXPORT void _Exit(int status)
{
	AS_RESOLVE(_Exit);
	if (CMM_LOAD_SHARED(as_live) && getpid() == as_pid)
		as_collector_final("_exit");
	real__Exit(status);
	__builtin_unreachable();
}

/* main may end with pthread_exit: the collector then ends the process when
 * only the shim's threads are left (see collector.c). */
AS_EXPORT void pthread_exit(void *ret)
{
	AS_RESOLVE(pthread_exit);
	if (as_gettid() == as_pid)
		CMM_STORE_SHARED(as_main_exited, 1);
	real_pthread_exit(ret);
	__builtin_unreachable();
}

/* glibc makes a blocking call cancellable while it waits; a timed call that
 * makes its own syscall (preload/raw.c) is not.  From the first cancel on,
 * every call goes through libc, and a target inside a raw syscall is kicked
 * out of it to make the call again there. */
AS_EXPORT int pthread_cancel(pthread_t th)
{
	AS_RESOLVE(pthread_cancel);
	CMM_STORE_SHARED(as_raw_ok, 0);
	int r = real_pthread_cancel(th);
	if (r == 0)
		as_raw_cancel(th);
	return r;
}

/* Per-thread credentials: the shim's threads make the same call
 * (preload/creds.c), so glibc's set*id on every thread works for them as
 * it does for the program's. */
AS_EXPORT int prctl(int option, ...)
{
	va_list ap;
	va_start(ap, option);
	unsigned long a2 = va_arg(ap, unsigned long), a3 = va_arg(ap, unsigned long);
	unsigned long a4 = va_arg(ap, unsigned long), a5 = va_arg(ap, unsigned long);
	va_end(ap);
	AS_RESOLVE(prctl);
	int r = real_prctl(option, a2, a3, a4, a5);
	if (r >= 0)
		as_creds_prctl(option, a2, a3, a4, a5);
	return r;
}

AS_EXPORT int capset(void *hdr, void *data)
{
	AS_RESOLVE(capset);
	int r = real_capset(hdr, data);
	if (r == 0)
		as_creds_capset(hdr, data);
	return r;
}

/* ---- waiting for children ----
 * A wait with WNOHANG returns at once: not timed.  system() waits for its
 * shell inside glibc (no hook sees that wait4): timed as a whole. */
#include <sys/resource.h>
#include <sys/wait.h>

AS_REAL(pid_t, wait, (int *));
AS_REAL(pid_t, waitpid, (pid_t, int *, int));
AS_REAL(pid_t, wait4, (pid_t, int *, int, struct rusage *));
AS_REAL(int, waitid, (idtype_t, id_t, siginfo_t *, int));
AS_REAL(int, system, (const char *));

AS_EXPORT pid_t wait(int *status)
{
	AS_RESOLVE(wait);
	AS_TIMED_CALL_NB(pid_t, AS_CALL_WAIT, -1, 0, real_wait(status));
}

AS_EXPORT pid_t waitpid(pid_t pid, int *status, int options)
{
	AS_RESOLVE(waitpid);
	AS_TIMED_CALL_NB(pid_t, AS_CALL_WAITPID, -1, options & WNOHANG, real_waitpid(pid, status, options));
}

AS_EXPORT pid_t wait4(pid_t pid, int *status, int options, struct rusage *ru)
{
	AS_RESOLVE(wait4);
	AS_TIMED_CALL_NB(pid_t, AS_CALL_WAIT4, -1, options & WNOHANG, real_wait4(pid, status, options, ru));
}

AS_EXPORT int waitid(idtype_t type, id_t id, siginfo_t *info, int options)
{
	AS_RESOLVE(waitid);
	AS_TIMED_CALL_NB(int, AS_CALL_WAITID, -1, options & WNOHANG, real_waitid(type, id, info, options));
}

AS_EXPORT int system(const char *cmd)
{
	AS_RESOLVE(system);
	AS_TIMED_CALL_NB(int, AS_CALL_SYSTEM, -1, 0, real_system(cmd));
}
