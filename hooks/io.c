/* io.c — read, write, pread, pwrite, readv, writev (and the 64-bit and
 * _FORTIFY_SOURCE entry points that programs actually link against).
 * Each is one syscall in glibc, made here by the timed path itself
 * (preload/raw.c); __pread_chk keeps libc's. */
#include "shim.h"

#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

AS_REAL(ssize_t, read, (int, void *, size_t));
AS_REAL(ssize_t, write, (int, const void *, size_t));
AS_REAL(ssize_t, pread, (int, void *, size_t, off_t));
AS_REAL(ssize_t, pwrite, (int, const void *, size_t, off_t));
AS_REAL(ssize_t, readv, (int, const struct iovec *, int));
AS_REAL(ssize_t, writev, (int, const struct iovec *, int));
AS_REAL(ssize_t, __read_chk, (int, void *, size_t, size_t));
AS_REAL(ssize_t, __pread_chk, (int, void *, size_t, off_t, size_t));

AS_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	AS_RESOLVE(read);
	AS_TIMED_RAW(ssize_t, AS_CALL_READ, fd, real_read(fd, buf, n), SYS_read, fd, (long)buf, (long)n, 0, 0, 0);
}

AS_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	AS_RESOLVE(__read_chk);
	if (AS_UNLIKELY(n > buflen))
		return real___read_chk(fd, buf, n, buflen);      /* which aborts */
	AS_TIMED_RAW(ssize_t, AS_CALL_READ, fd, real___read_chk(fd, buf, n, buflen), SYS_read, fd, (long)buf, (long)n,
		     0, 0, 0);
}

AS_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	AS_RESOLVE(write);
	AS_TIMED_RAW(ssize_t, AS_CALL_WRITE, fd, real_write(fd, buf, n), SYS_write, fd, (long)buf, (long)n, 0, 0, 0);
}

AS_EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	AS_RESOLVE(pread);
	AS_TIMED_RAW(ssize_t, AS_CALL_PREAD, fd, real_pread(fd, buf, n, off), SYS_pread64, fd, (long)buf, (long)n, off, 0, 0);
}
AS_EXPORT ssize_t pread64(int, void *, size_t, off_t) __attribute__((alias("pread")));

AS_EXPORT ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen)
{
	AS_RESOLVE(__pread_chk);
	AS_TIMED_CALL(ssize_t, AS_CALL_PREAD, fd, real___pread_chk(fd, buf, n, off, buflen));
}

AS_EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	AS_RESOLVE(pwrite);
	AS_TIMED_RAW(ssize_t, AS_CALL_PWRITE, fd, real_pwrite(fd, buf, n, off), SYS_pwrite64, fd, (long)buf, (long)n, off, 0,
		     0);
}
AS_EXPORT ssize_t pwrite64(int, const void *, size_t, off_t) __attribute__((alias("pwrite")));

AS_EXPORT ssize_t readv(int fd, const struct iovec *iov, int n)
{
	AS_RESOLVE(readv);
	AS_TIMED_RAW(ssize_t, AS_CALL_READV, fd, real_readv(fd, iov, n), SYS_readv, fd, (long)iov, n, 0, 0, 0);
}

AS_EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
	AS_RESOLVE(writev);
	AS_TIMED_RAW(ssize_t, AS_CALL_WRITEV, fd, real_writev(fd, iov, n), SYS_writev, fd, (long)iov, n, 0, 0, 0);
}

/* ---- fd to fd ----
 * Recorded on the side that can wait: sendfile's out_fd (its in_fd is a
 * file), splice's fd_out when fd_in cannot block.  A call is skipped only
 * when neither side can block (SPLICE_F_NONBLOCK covers the pipe alone). */
#include <fcntl.h>
#include <sys/sendfile.h>

AS_REAL(ssize_t, sendfile, (int, int, off_t *, size_t));
AS_REAL(ssize_t, splice, (int, loff_t *, int, loff_t *, size_t, unsigned));

AS_EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t n)
{
	AS_RESOLVE(sendfile);
	AS_TIMED_CALL(ssize_t, AS_CALL_SENDFILE, out, real_sendfile(out, in, off, n));
}
AS_EXPORT ssize_t sendfile64(int, int, off_t *, size_t) __attribute__((alias("sendfile")));

AS_EXPORT ssize_t splice(int in, loff_t *in_off, int out, loff_t *out_off, size_t n, unsigned flags)
{
	AS_RESOLVE(splice);
	int in_nb = as_fd_cannot_block(in);
	AS_TIMED_CALL_NB(ssize_t, AS_CALL_SPLICE, in_nb ? out : in, in_nb && as_fd_cannot_block(out),
			 real_splice(in, in_off, out, out_off, n, flags));
}
