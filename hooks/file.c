/* file.c — open, openat (and their 64-bit and fortified forms), fsync, fdatasync.
 * open's fd is only known after the call; the path's fd is recorded as -1. */
#include "shim.h"

#include <fcntl.h>
#include <stdarg.h>
#include <unistd.h>

AS_REAL(int, open, (const char *, int, ...));
AS_REAL(int, openat, (int, const char *, int, ...));
AS_REAL(int, __open_2, (const char *, int));
AS_REAL(int, __openat_2, (int, const char *, int));
AS_REAL(int, fsync, (int));
AS_REAL(int, fdatasync, (int));

static inline mode_t mode_arg(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

/* The timed calls; the hooks below wrap them to take the new fd out of the
 * map of fds that cannot block (preload/fds.c): the number may have been a
 * non-blocking socket's, closed by a call no hook sees. */
static inline int open_timed(const char *path, int flags, mode_t mode)
{
	AS_TIMED_CALL(int, AS_CALL_OPEN, -1, real_open(path, flags, mode));
}

static inline int open_2_timed(const char *path, int flags)
{
	AS_TIMED_CALL(int, AS_CALL_OPEN, -1, real___open_2(path, flags));
}

static inline int openat_timed(int dirfd, const char *path, int flags, mode_t mode)
{
	AS_TIMED_CALL(int, AS_CALL_OPENAT, -1, real_openat(dirfd, path, flags, mode));
}

static inline int openat_2_timed(int dirfd, const char *path, int flags)
{
	AS_TIMED_CALL(int, AS_CALL_OPENAT, -1, real___openat_2(dirfd, path, flags));
}

AS_EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	AS_RESOLVE(open);
	return as_fd_note(open_timed(path, flags, mode), 0, 0);
}
AS_EXPORT int open64(const char *, int, ...) __attribute__((alias("open")));

AS_EXPORT int __open_2(const char *path, int flags)
{
	AS_RESOLVE(__open_2);
	return as_fd_note(open_2_timed(path, flags), 0, 0);
}
AS_EXPORT int __open64_2(const char *, int) __attribute__((alias("__open_2")));

AS_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	AS_RESOLVE(openat);
	return as_fd_note(openat_timed(dirfd, path, flags, mode), 0, 0);
}
AS_EXPORT int openat64(int, const char *, int, ...) __attribute__((alias("openat")));

AS_EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	AS_RESOLVE(__openat_2);
	return as_fd_note(openat_2_timed(dirfd, path, flags), 0, 0);
}
AS_EXPORT int __openat64_2(int, const char *, int) __attribute__((alias("__openat_2")));

AS_EXPORT int fsync(int fd)
{
	AS_RESOLVE(fsync);
	AS_TIMED_CALL(int, AS_CALL_FSYNC, fd, real_fsync(fd));
}

AS_EXPORT int fdatasync(int fd)
{
	AS_RESOLVE(fdatasync);
	AS_TIMED_CALL(int, AS_CALL_FDATASYNC, fd, real_fdatasync(fd));
}

/* ---- file locks ----
 * LOCK_NB, and lockf's F_TLOCK, F_TEST and F_ULOCK, never wait: not timed.
 * fcntl's F_SETLKW is timed by the fcntl hook (hooks/fd.c). */
#include <sys/file.h>

AS_REAL(int, flock, (int, int));
AS_REAL(int, lockf, (int, int, off_t));

AS_EXPORT int flock(int fd, int op)
{
	AS_RESOLVE(flock);
	AS_TIMED_CALL_NB(int, AS_CALL_FLOCK, fd, op & LOCK_NB, real_flock(fd, op));
}

AS_EXPORT int lockf(int fd, int cmd, off_t len)
{
	AS_RESOLVE(lockf);
	AS_TIMED_CALL_NB(int, AS_CALL_LOCKF, fd, cmd != F_LOCK, real_lockf(fd, cmd, len));
}
AS_EXPORT int lockf64(int, int, off_t) __attribute__((alias("lockf")));
