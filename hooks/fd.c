/* fd.c — where fds are made, change mode and go away: socket, socketpair,
 * pipe, pipe2, eventfd, timerfd_create, signalfd, fcntl (F_SETFL, F_DUPFD),
 * ioctl (FIONBIO), dup, dup2, dup3, close, close_range, fclose.
 *
 * None of these is timed.  Each keeps the map of fds that cannot block
 * (preload/fds.c) that lets the read/write/recv/send hooks skip their
 * clock reads on non-blocking sockets and pipes.  accept and open, which
 * are timed, update the map in hooks/net.c and hooks/file.c.  The map
 * helpers touch neither errno nor the return value. */
#include "shim.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

AS_REAL(int, socket, (int, int, int));
AS_REAL(int, socketpair, (int, int, int, int[2]));
AS_REAL(int, pipe, (int[2]));
AS_REAL(int, pipe2, (int[2], int));
AS_REAL(int, eventfd, (unsigned, int));
AS_REAL(int, timerfd_create, (clockid_t, int));
AS_REAL(int, signalfd, (int, const sigset_t *, int));
AS_REAL(int, fcntl, (int, int, ...));
AS_REAL(int, ioctl, (int, unsigned long, ...));
AS_REAL(int, dup, (int));
AS_REAL(int, dup2, (int, int));
AS_REAL(int, dup3, (int, int, int));
AS_REAL(int, close, (int));
AS_REAL(int, close_range, (unsigned, unsigned, int));
AS_REAL(int, fclose, (FILE *));

AS_EXPORT int socket(int domain, int type, int protocol)
{
	AS_RESOLVE(socket);
	return as_fd_note(real_socket(domain, type, protocol), 1, type & SOCK_NONBLOCK);
}

AS_EXPORT int socketpair(int domain, int type, int protocol, int sv[2])
{
	AS_RESOLVE(socketpair);
	int r = real_socketpair(domain, type, protocol, sv);
	if (r == 0) {
		as_fd_note(sv[0], 1, type & SOCK_NONBLOCK);
		as_fd_note(sv[1], 1, type & SOCK_NONBLOCK);
	}
	return r;
}

AS_EXPORT int pipe(int fds[2])
{
	AS_RESOLVE(pipe);
	int r = real_pipe(fds);
	if (r == 0) {
		as_fd_note(fds[0], 1, 0);
		as_fd_note(fds[1], 1, 0);
	}
	return r;
}

/* Refused to libunwind's set-up (as_tls.unwinding): its address
 * validation pipe would sit in the program's fd table (preload/stack.c). */
AS_EXPORT int pipe2(int fds[2], int flags)
{
	if (AS_UNLIKELY(as_tls.unwinding)) {
		errno = EMFILE;
		return -1;
	}
	AS_RESOLVE(pipe2);
	int r = real_pipe2(fds, flags);
	if (r == 0) {
		as_fd_note(fds[0], 1, flags & O_NONBLOCK);
		as_fd_note(fds[1], 1, flags & O_NONBLOCK);
	}
	return r;
}

AS_EXPORT int eventfd(unsigned initval, int flags)
{
	AS_RESOLVE(eventfd);
	return as_fd_note(real_eventfd(initval, flags), 1, flags & EFD_NONBLOCK);
}

AS_EXPORT int timerfd_create(clockid_t clock, int flags)
{
	AS_RESOLVE(timerfd_create);
	return as_fd_note(real_timerfd_create(clock, flags), 1, flags & TFD_NONBLOCK);
}

/* With an existing fd, signalfd changes only the mask, not the flags. */
AS_EXPORT int signalfd(int fd, const sigset_t *mask, int flags)
{
	AS_RESOLVE(signalfd);
	int r = real_signalfd(fd, mask, flags);
	return fd == -1 ? as_fd_note(r, 1, flags & SFD_NONBLOCK) : r;
}

/* A record lock waits whatever the fd's O_NONBLOCK says. */
static int fcntl_lock_timed(int fd, int cmd, void *arg)
{
	AS_TIMED_CALL_NB(int, AS_CALL_FCNTL, fd, 0, real_fcntl(fd, cmd, arg));
}

/* The third argument is an int or a pointer, read as a pointer the way
 * glibc's own fcntl reads it. */
AS_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	AS_RESOLVE(fcntl);
	if (cmd == F_SETLKW || cmd == F_OFD_SETLKW)
		return fcntl_lock_timed(fd, cmd, arg);
	int r = real_fcntl(fd, cmd, arg);
	if (r < 0)
		return r;
	if (cmd == F_SETFL)
		as_fd_set_nonblock(fd, ((int)(intptr_t)arg & O_NONBLOCK) != 0);
	else if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		as_fd_copy(fd, r);
	return r;
}
/* glibc's large-file name; the same call on 64-bit targets */
AS_EXPORT int fcntl64(int, int, ...) __attribute__((alias("fcntl")));

AS_EXPORT int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	AS_RESOLVE(ioctl);
	int r = real_ioctl(fd, request, arg);
	if (r == 0 && request == FIONBIO && arg)
		as_fd_set_nonblock(fd, *(const int *)arg != 0);
	return r;
}

AS_EXPORT int dup(int fd)
{
	AS_RESOLVE(dup);
	int r = real_dup(fd);
	return r < 0 ? r : as_fd_copy(fd, r);
}

AS_EXPORT int dup2(int from, int to)
{
	AS_RESOLVE(dup2);
	int r = real_dup2(from, to);
	return r < 0 || from == to ? r : as_fd_copy(from, r);
}

AS_EXPORT int dup3(int from, int to, int flags)
{
	AS_RESOLVE(dup3);
	int r = real_dup3(from, to, flags);
	return r < 0 ? r : as_fd_copy(from, r);
}

/* Forgotten before the real close: once the number is free, another
 * thread's socket() may take it, and its note must not be undone. */
AS_EXPORT int close(int fd)
{
	AS_RESOLVE(close);
	as_fd_forget(fd);
	if (AS_UNLIKELY(as_me()->loop_fd == fd + 1))
		as_me()->loop_fd = 0;   /* its loop's epoll fd: the next one it waits on is its own */
	return real_close(fd);
}

/* glibc 2.34 and later only: where it is missing, no program calls it
 * through us, but a program built elsewhere may look for it. */
AS_EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	AS_RESOLVE(close_range);
	if (!real_close_range) {
		errno = ENOSYS;
		return -1;
	}
	if (!((unsigned)flags & CLOSE_RANGE_CLOEXEC))
		as_fd_forget_range(first, last);
	return real_close_range(first, last, flags);
}

/* glibc closes a FILE's fd with its internal close, which no hook sees. */
AS_EXPORT int fclose(FILE *fp)
{
	AS_RESOLVE(fclose);
	if (fp) {
		int saved = errno;
		as_fd_forget(fileno(fp));
		errno = saved;
	}
	return real_fclose(fp);
}
