/* io.c — read, write, pread, pwrite, readv, writev (and the 64-bit and
 * _FORTIFY_SOURCE entry points that programs actually link against). */
#include "shim.h"

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
	AS_TIMED_CALL(ssize_t, AS_CALL_READ, fd, real_read(fd, buf, n));
}

AS_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	AS_RESOLVE(__read_chk);
	AS_TIMED_CALL(ssize_t, AS_CALL_READ, fd, real___read_chk(fd, buf, n, buflen));
}

AS_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	AS_RESOLVE(write);
	AS_TIMED_CALL(ssize_t, AS_CALL_WRITE, fd, real_write(fd, buf, n));
}

AS_EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	AS_RESOLVE(pread);
	AS_TIMED_CALL(ssize_t, AS_CALL_PREAD, fd, real_pread(fd, buf, n, off));
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
	AS_TIMED_CALL(ssize_t, AS_CALL_PWRITE, fd, real_pwrite(fd, buf, n, off));
}
AS_EXPORT ssize_t pwrite64(int, const void *, size_t, off_t) __attribute__((alias("pwrite")));

AS_EXPORT ssize_t readv(int fd, const struct iovec *iov, int n)
{
	AS_RESOLVE(readv);
	AS_TIMED_CALL(ssize_t, AS_CALL_READV, fd, real_readv(fd, iov, n));
}

AS_EXPORT ssize_t writev(int fd, const struct iovec *iov, int n)
{
	AS_RESOLVE(writev);
	AS_TIMED_CALL(ssize_t, AS_CALL_WRITEV, fd, real_writev(fd, iov, n));
}
