/* fds.c — which fds cannot block: the map the hooks' fast path reads
 * (as_fd_cannot_block in shim.h), kept by the fd lifecycle hooks
 * (hooks/fd.c, and accept and open in hooks/net.c and hooks/file.c).
 *
 * Three bits per fd below AS_FD_MAX.  `kind`: the fd is a socket, pipe,
 * eventfd, timerfd or signalfd made under the shim's eyes, for which
 * O_NONBLOCK means "never wait".  `fast`: kind and O_NONBLOCK are both set.
 * `shared`: the fd was dup'ed, so its open file (and O_NONBLOCK with it)
 * may be reached by other numbers; making any of them blocking takes every
 * shared fd out of `fast` (which ones share a file is not followed).
 * Regular files are never mapped: O_NONBLOCK does not stop a disk read.
 * Errors only ever cost timing: an fd wrongly left out of the map is timed
 * as before.  The one way to wrongly put an fd in it is to change
 * O_NONBLOCK behind the shim's back (another process sharing the open file
 * description, or a raw syscall); README "Known limits".
 *
 * Updates are atomic read-modify-writes on the map's words (other threads
 * make and close fds at the same time); the fast path reads one word. */
#include "runtime.h"

#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <urcu/uatomic.h>

uint64_t as_fd_fast[AS_FD_MAX / 64] AS_HOT_DATA;
static uint64_t kind_map[AS_FD_MAX / 64], shared_map[AS_FD_MAX / 64];

static void set_bit(uint64_t *map, unsigned fd, int on)
{
	uint64_t bit = 1ull << (fd % 64);
	if (on)
		uatomic_or(&map[fd / 64], bit);
	else if (CMM_LOAD_SHARED(map[fd / 64]) & bit)
		uatomic_and(&map[fd / 64], ~bit);
}

static int get_bit(uint64_t *map, unsigned fd)
{
	return CMM_LOAD_SHARED(map[fd / 64]) >> (fd % 64) & 1;
}

int as_fd_note(int fd, int kind, int nonblock)
{
	if ((unsigned)fd >= AS_FD_MAX || as_tls.own_fds)
		return fd;      /* the map is of the program's table */
	/* fast off first: the fd is never fast without being of its kind */
	set_bit(as_fd_fast, (unsigned)fd, 0);
	set_bit(kind_map, (unsigned)fd, kind);
	set_bit(shared_map, (unsigned)fd, 0);
	set_bit(as_fd_fast, (unsigned)fd, kind && nonblock);
	return fd;
}

int as_fd_copy(int from, int to)
{
	if ((unsigned)to >= AS_FD_MAX)
		return to;
	if ((unsigned)from >= AS_FD_MAX)
		return as_fd_note(to, 0, 0);
	int kind = get_bit(kind_map, (unsigned)from);
	as_fd_note(to, kind, get_bit(as_fd_fast, (unsigned)from));
	if (kind) {
		set_bit(shared_map, (unsigned)from, 1);
		set_bit(shared_map, (unsigned)to, 1);
	}
	return to;
}

void as_fd_forget(int fd)
{
	as_fd_note(fd, 0, 0);
}

void as_fd_forget_range(unsigned first, unsigned last)
{
	for (unsigned fd = first; fd <= last && fd < AS_FD_MAX; fd++)
		as_fd_forget((int)fd);
}

void as_fd_set_nonblock(int fd, int nonblock)
{
	if ((unsigned)fd >= AS_FD_MAX || !get_bit(kind_map, (unsigned)fd))
		return;
	set_bit(as_fd_fast, (unsigned)fd, nonblock);
	if (nonblock || !get_bit(shared_map, (unsigned)fd))
		return;
	for (unsigned w = 0; w < AS_FD_MAX / 64; w++) {
		uint64_t shared = CMM_LOAD_SHARED(shared_map[w]);
		if (shared & CMM_LOAD_SHARED(as_fd_fast[w]))
			uatomic_and(&as_fd_fast[w], ~shared);
	}
}

/* The shim's own threads (collector, watchdog) take an fd table of their
 * own, so a program that closes every fd, or dup2()s a file of its own over
 * every number (daemons do both), can neither close the trace under the
 * collector nor have a write meant for the trace land in its file: checking
 * the fd before each write cannot close that race, a table of its own does.
 * KEEP (the trace's fd, or -1) stays open in the new table, and so does
 * fd 2 while it is the stderr the process started with (the shim's
 * messages go there: preload/init.c); every other fd of the copy is closed
 * at once, so no file of the program's lives on in it.  Raw syscalls:
 * these closes are not the program's (hooks/fd.c).
 * Returns -1 where the kernel refuses (no close_range, a seccomp filter):
 * the thread then shares the program's table as before. */
/* Close every fd of this thread's table but A and B (-1: none). */
static void close_all_but(int a, int b)
{
	int kept[2] = { a < b ? a : b, a < b ? b : a };
	unsigned from = 0;
	for (int i = 0; i < 2; i++) {
		if (kept[i] < 0 || (unsigned)kept[i] < from)
			continue;       /* none, or the same as the first */
		if ((unsigned)kept[i] > from)
			syscall(SYS_close_range, from, (unsigned)kept[i] - 1, 0);
		from = (unsigned)kept[i] + 1;
	}
	syscall(SYS_close_range, from, ~0U, 0);
}

int as_fds_private(int keep)
{
	int saved = errno;
	if (syscall(SYS_close_range, ~0U, ~0U, 0) != 0 || unshare(CLONE_FILES) != 0) {
		errno = saved;
		return -1;
	}
	close_all_but(keep, as_stderr_is_start() ? 2 : -1);
	as_tls.own_fds = 1;
	errno = saved;
	return 0;
}

enum as_fd_kind as_fd_kind_of(const struct stat *st)
{
	if (S_ISREG(st->st_mode))
		return AS_FD_FILE;
	if (S_ISFIFO(st->st_mode))
		return AS_FD_PIPE;
	if (S_ISSOCK(st->st_mode))
		return AS_FD_SOCKET;
	return AS_FD_OTHER;
}
