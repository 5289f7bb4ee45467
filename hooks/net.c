/* net.c — recv/recvfrom/recvmsg, send/sendto/sendmsg, connect, accept, accept4.
 * MSG_DONTWAIT makes a call non-blocking like O_NONBLOCK does: not timed.
 * accept's new fd goes into the map of fds that cannot block (preload/fds.c).
 * recv* and send* are one syscall each in glibc (recv and send: recvfrom
 * and sendto), made here by the timed path itself (preload/raw.c). */
#include "shim.h"

#include <sys/socket.h>
#include <sys/syscall.h>

AS_REAL(ssize_t, recv, (int, void *, size_t, int));
AS_REAL(ssize_t, recvfrom, (int, void *, size_t, int, struct sockaddr *, socklen_t *));
AS_REAL(ssize_t, recvmsg, (int, struct msghdr *, int));
AS_REAL(ssize_t, send, (int, const void *, size_t, int));
AS_REAL(ssize_t, sendto, (int, const void *, size_t, int, const struct sockaddr *, socklen_t));
AS_REAL(ssize_t, sendmsg, (int, const struct msghdr *, int));
AS_REAL(int, connect, (int, const struct sockaddr *, socklen_t));
AS_REAL(int, accept, (int, struct sockaddr *, socklen_t *));
AS_REAL(int, accept4, (int, struct sockaddr *, socklen_t *, int));
AS_REAL(ssize_t, __recv_chk, (int, void *, size_t, size_t, int));
AS_REAL(ssize_t, __recvfrom_chk, (int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *));

#define DONTWAIT(fd, flags) (((flags) & MSG_DONTWAIT) || as_fd_cannot_block(fd))

AS_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	AS_RESOLVE(recv);
	AS_TIMED_RAW_NB(ssize_t, AS_CALL_RECV, fd, DONTWAIT(fd, flags), real_recv(fd, buf, n, flags), SYS_recvfrom, fd,
			(long)buf, (long)n, flags, 0, 0);
}

AS_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	AS_RESOLVE(__recv_chk);
	AS_TIMED_CALL_NB(ssize_t, AS_CALL_RECV, fd, DONTWAIT(fd, flags), real___recv_chk(fd, buf, n, buflen, flags));
}

AS_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *a, socklen_t *al)
{
	AS_RESOLVE(recvfrom);
	AS_TIMED_RAW_NB(ssize_t, AS_CALL_RECVFROM, fd, DONTWAIT(fd, flags), real_recvfrom(fd, buf, n, flags, a, al),
			SYS_recvfrom, fd, (long)buf, (long)n, flags, (long)a, (long)al);
}

AS_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
				 struct sockaddr *a, socklen_t *al)
{
	AS_RESOLVE(__recvfrom_chk);
	AS_TIMED_CALL_NB(ssize_t, AS_CALL_RECVFROM, fd, DONTWAIT(fd, flags), real___recvfrom_chk(fd, buf, n, buflen, flags, a, al));
}

AS_EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int flags)
{
	AS_RESOLVE(recvmsg);
	AS_TIMED_RAW_NB(ssize_t, AS_CALL_RECVMSG, fd, DONTWAIT(fd, flags), real_recvmsg(fd, m, flags), SYS_recvmsg, fd,
			(long)m, flags, 0, 0, 0);
}

AS_EXPORT ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	AS_RESOLVE(send);
	AS_TIMED_RAW_NB(ssize_t, AS_CALL_SEND, fd, DONTWAIT(fd, flags), real_send(fd, buf, n, flags), SYS_sendto, fd,
			(long)buf, (long)n, flags, 0, 0);
}

AS_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *a, socklen_t al)
{
	AS_RESOLVE(sendto);
	AS_TIMED_RAW_NB(ssize_t, AS_CALL_SENDTO, fd, DONTWAIT(fd, flags), real_sendto(fd, buf, n, flags, a, al),
			SYS_sendto, fd, (long)buf, (long)n, flags, (long)a, (long)al);
}

AS_EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
	AS_RESOLVE(sendmsg);
	AS_TIMED_RAW_NB(ssize_t, AS_CALL_SENDMSG, fd, DONTWAIT(fd, flags), real_sendmsg(fd, m, flags), SYS_sendmsg, fd,
			(long)m, flags, 0, 0, 0);
}

AS_EXPORT int connect(int fd, const struct sockaddr *a, socklen_t al)
{
	AS_RESOLVE(connect);
	AS_TIMED_CALL(int, AS_CALL_CONNECT, fd, real_connect(fd, a, al));
}

static inline int accept_timed(int fd, struct sockaddr *a, socklen_t *al)
{
	AS_TIMED_CALL(int, AS_CALL_ACCEPT, fd, real_accept(fd, a, al));
}

AS_EXPORT int accept(int fd, struct sockaddr *a, socklen_t *al)
{
	AS_RESOLVE(accept);
	return as_fd_note(accept_timed(fd, a, al), 1, 0);
}

static inline int accept4_timed(int fd, struct sockaddr *a, socklen_t *al, int flags)
{
	AS_TIMED_CALL(int, AS_CALL_ACCEPT4, fd, real_accept4(fd, a, al, flags));
}

AS_EXPORT int accept4(int fd, struct sockaddr *a, socklen_t *al, int flags)
{
	AS_RESOLVE(accept4);
	return as_fd_note(accept4_timed(fd, a, al, flags), 1, flags & SOCK_NONBLOCK);
}

/* ---- batches ---- */
AS_REAL(int, recvmmsg, (int, struct mmsghdr *, unsigned, int, struct timespec *));
AS_REAL(int, sendmmsg, (int, struct mmsghdr *, unsigned, int));

AS_EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *timeout)
{
	AS_RESOLVE(recvmmsg);
	AS_TIMED_CALL_NB(int, AS_CALL_RECVMMSG, fd, DONTWAIT(fd, flags), real_recvmmsg(fd, v, n, flags, timeout));
}

AS_EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned n, int flags)
{
	AS_RESOLVE(sendmmsg);
	AS_TIMED_CALL_NB(int, AS_CALL_SENDMMSG, fd, DONTWAIT(fd, flags), real_sendmmsg(fd, v, n, flags));
}
