/* more_waits MODE [MS] — an epoll loop thread that, inside one iteration,
 * waits about MS ms (default 200) in the call MODE names, made from a
 * function wait_in_MODE the tests look for in the blocking call's stack.
 * It checks every result itself and prints "OK PID" only when all were right.
 *
 * MODE: mutex rdlock wrlock cond_wait cond_timedwait sem_wait sem_timedwait
 * join waitpid wait wait4 waitid system flock lockf fcntl sigtimedwait
 * sigwaitinfo splice sendfile recvmmsg, or errors: return values and errno
 * of each hooked call on the loop thread (EDEADLK, EBUSY, ETIMEDOUT, ECHILD,
 * EBADF, ...), with a few timed-out waits of MS ms among them. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SENTINEL 4242

static int ms = 200, bad, ready;
static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rwlock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static sem_t sem;
static pthread_t main_thread;
static int fds[2];
static const char *lock_path = "more_waits.lock";

static void check(int ok, const char *what, long r)
{
	if (!ok) {
		fprintf(stderr, "more_waits: %s: got %ld, errno %d (%s)\n", what, r, errno, strerror(errno));
		bad = 1;
	}
}

/* a result and the errno it left: ERR 0 means errno must be untouched */
static void expect(long r, long want, int err, const char *what)
{
	check(r == want && errno == (err ? err : SENTINEL), what, r);
	errno = SENTINEL;
}

static void nap(int m)
{
	struct timespec ts = { m / 1000, (m % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static struct timespec deadline(int m)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += (m % 1000) * 1000000L;
	ts.tv_sec += m / 1000 + ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	return ts;
}

static void set_ready(void)
{
	__atomic_store_n(&ready, 1, __ATOMIC_SEQ_CST);
}

static void wait_ready(void)
{
	while (!__atomic_load_n(&ready, __ATOMIC_SEQ_CST))
		sched_yield();
}

static pthread_t helper(void *(*fn)(void *))
{
	pthread_t th;
	pthread_create(&th, NULL, fn, NULL);
	return th;
}

/* ---- helpers that hold something for MS ms ---- */

static void *hold_mutex(void *a)
{
	pthread_mutex_lock(&mutex);
	set_ready();
	nap(ms);
	pthread_mutex_unlock(&mutex);
	return a;
}

static void *hold_write(void *a)
{
	pthread_rwlock_wrlock(&rwlock);
	set_ready();
	nap(ms);
	pthread_rwlock_unlock(&rwlock);
	return a;
}

static void *hold_read(void *a)
{
	pthread_rwlock_rdlock(&rwlock);
	set_ready();
	nap(ms);
	pthread_rwlock_unlock(&rwlock);
	return a;
}

static void *late_signal(void *a)
{
	nap(ms);
	pthread_mutex_lock(&mutex);
	set_ready();
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&mutex);
	return a;
}

static void *late_post(void *a)
{
	nap(ms);
	sem_post(&sem);
	return a;
}

static void *late_kill(void *a)
{
	nap(ms);
	pthread_kill(main_thread, SIGUSR1);
	return a;
}

static void *late_write(void *a)
{
	nap(ms);
	check(write(fds[1], "0123456789", 10) == 10, "helper write", 0);
	return a;
}

static void *late_drain(void *a)
{
	static char buf[65536];
	nap(ms);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	while (read(fds[0], buf, sizeof(buf)) > 0)
		;
	return a;
}

static void *just_nap(void *a)
{
	nap(ms);
	return a;
}

/* a child holding a lock on lock_path for MS ms: KIND says which */
static pid_t lock_holder(char kind)
{
	int p[2];
	check(pipe(p) == 0, "pipe", -1);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(lock_path, O_RDWR | O_CREAT, 0600);
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		int r = kind == 'f' ? flock(fd, LOCK_EX) : kind == 'l' ? lockf(fd, F_LOCK, 0) : fcntl(fd, F_SETLK, &fl);
		if (r != 0 || write(p[1], "x", 1) != 1)
			_exit(1);
		nap(ms);
		_exit(0);
	}
	char c;
	check(read(p[0], &c, 1) == 1, "holder's word", -1);
	close(p[0]);
	close(p[1]);
	return pid;
}

static void reap(pid_t pid, int code)
{
	int st = 0;
	check(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == code, "child's status", st);
}

static pid_t napping_child(int code)
{
	pid_t pid = fork();
	if (pid == 0) {
		nap(ms);
		_exit(code);
	}
	return pid;
}

/* ---- one per mode, never inlined: the tests look for them in the stack ---- */
#define WAIT_IN(name) __attribute__((noinline)) void wait_in_##name(void)

WAIT_IN(mutex)
{
	pthread_t th = helper(hold_mutex);
	wait_ready();
	expect(pthread_mutex_lock(&mutex), 0, 0, "mutex_lock");
	pthread_mutex_unlock(&mutex);
	pthread_join(th, NULL);
}

WAIT_IN(rdlock)
{
	pthread_t th = helper(hold_write);
	wait_ready();
	expect(pthread_rwlock_rdlock(&rwlock), 0, 0, "rdlock");
	pthread_rwlock_unlock(&rwlock);
	pthread_join(th, NULL);
}

WAIT_IN(wrlock)
{
	pthread_t th = helper(hold_read);
	wait_ready();
	expect(pthread_rwlock_wrlock(&rwlock), 0, 0, "wrlock");
	pthread_rwlock_unlock(&rwlock);
	pthread_join(th, NULL);
}

WAIT_IN(cond_wait)
{
	pthread_mutex_lock(&mutex);
	pthread_t th = helper(late_signal);
	while (!__atomic_load_n(&ready, __ATOMIC_SEQ_CST))
		expect(pthread_cond_wait(&cond, &mutex), 0, 0, "cond_wait");
	pthread_mutex_unlock(&mutex);
	pthread_join(th, NULL);
}

WAIT_IN(cond_timedwait)
{
	struct timespec until = deadline(ms);
	pthread_mutex_lock(&mutex);
	expect(pthread_cond_timedwait(&cond, &mutex, &until), ETIMEDOUT, 0, "cond_timedwait");
	pthread_mutex_unlock(&mutex);
}

WAIT_IN(sem_wait)
{
	pthread_t th = helper(late_post);
	expect(sem_wait(&sem), 0, 0, "sem_wait");
	pthread_join(th, NULL);
}

WAIT_IN(sem_timedwait)
{
	struct timespec until = deadline(ms);
	expect(sem_timedwait(&sem, &until), -1, ETIMEDOUT, "sem_timedwait");
}

WAIT_IN(join)
{
	pthread_t th = helper(just_nap);
	expect(pthread_join(th, NULL), 0, 0, "join");
}

WAIT_IN(waitpid)
{
	int st = 0;
	pid_t pid = napping_child(7);
	expect(waitpid(pid, &st, 0), pid, 0, "waitpid");
	check(WIFEXITED(st) && WEXITSTATUS(st) == 7, "waitpid status", st);
}

WAIT_IN(wait)
{
	int st = 0;
	pid_t pid = napping_child(7);
	expect(wait(&st), pid, 0, "wait");
	check(WIFEXITED(st) && WEXITSTATUS(st) == 7, "wait status", st);
}

WAIT_IN(wait4)
{
	int st = 0;
	pid_t pid = napping_child(7);
	expect(wait4(pid, &st, 0, NULL), pid, 0, "wait4");
	check(WIFEXITED(st) && WEXITSTATUS(st) == 7, "wait4 status", st);
}

WAIT_IN(waitid)
{
	siginfo_t info;
	pid_t pid = napping_child(7);
	expect(waitid(P_PID, (id_t)pid, &info, WEXITED), 0, 0, "waitid");
	check(info.si_pid == pid && info.si_status == 7, "waitid status", info.si_status);
}

WAIT_IN(system)
{
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "sleep %d.%03d; exit 3", ms / 1000, ms % 1000);
	int st = system(cmd);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 3, "system status", st);
	errno = SENTINEL;
}

static void file_lock(char kind)
{
	pid_t pid = lock_holder(kind);
	int fd = open(lock_path, O_RDWR);
	errno = SENTINEL;
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	if (kind == 'f')
		expect(flock(fd, LOCK_EX), 0, 0, "flock");
	else if (kind == 'l')
		expect(lockf(fd, F_LOCK, 0), 0, 0, "lockf");
	else
		expect(fcntl(fd, F_SETLKW, &fl), 0, 0, "fcntl F_SETLKW");
	close(fd);
	reap(pid, 0);
}

WAIT_IN(flock)
{
	file_lock('f');
}

WAIT_IN(lockf)
{
	file_lock('l');
}

WAIT_IN(fcntl)
{
	file_lock('c');
}

WAIT_IN(sigtimedwait)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
	expect(sigtimedwait(&set, NULL, &t), -1, EAGAIN, "sigtimedwait");
}

WAIT_IN(sigwaitinfo)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_t th = helper(late_kill);
	expect(sigwaitinfo(&set, NULL), SIGUSR1, 0, "sigwaitinfo");
	pthread_join(th, NULL);
}

WAIT_IN(splice)
{
	int out[2];
	check(pipe(fds) == 0 && pipe(out) == 0, "pipes", -1);
	pthread_t th = helper(late_write);
	expect(splice(fds[0], NULL, out[1], NULL, 100, 0), 10, 0, "splice");
	pthread_join(th, NULL);
}

WAIT_IN(sendfile)
{
	static char buf[4096];
	FILE *f = tmpfile();
	check(f && fwrite(buf, 1, sizeof(buf), f) == sizeof(buf) && fflush(f) == 0, "tmpfile", -1);
	check(pipe(fds) == 0, "pipe", -1);
	fcntl(fds[1], F_SETFL, O_NONBLOCK);   /* fill it, then make it blocking again */
	while (write(fds[1], buf, sizeof(buf)) > 0)
		;
	fcntl(fds[1], F_SETFL, 0);
	errno = SENTINEL;
	pthread_t th = helper(late_drain);
	off_t off = 0;
	expect(sendfile(fds[1], fileno(f), &off, sizeof(buf)), sizeof(buf), 0, "sendfile");
	pthread_join(th, NULL);
}

WAIT_IN(recvmmsg)
{
	char b[16];
	struct iovec iov = { b, sizeof(b) };
	struct mmsghdr m = { .msg_hdr = { .msg_iov = &iov, .msg_iovlen = 1 } };
	check(socketpair(AF_UNIX, SOCK_DGRAM, 0, fds) == 0, "socketpair", -1);
	pthread_t th = helper(late_write);
	expect(recvmmsg(fds[0], &m, 1, 0, NULL), 1, 0, "recvmmsg");
	pthread_join(th, NULL);
}

/* ---- errors: the answers of the real calls, errno included ---- */

static void mutex_errors(void)
{
	pthread_mutexattr_t a;
	pthread_mutex_t m;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
	pthread_mutex_init(&m, &a);
	expect(pthread_mutex_lock(&m), 0, 0, "errorcheck lock");
	expect(pthread_mutex_lock(&m), EDEADLK, 0, "errorcheck relock");
	expect(pthread_mutex_trylock(&m), EBUSY, 0, "errorcheck trylock");
	expect(pthread_mutex_unlock(&m), 0, 0, "errorcheck unlock");
	expect(pthread_mutex_unlock(&m), EPERM, 0, "errorcheck unlock again");
	pthread_mutex_destroy(&m);

	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&m, &a);
	expect(pthread_mutex_lock(&m), 0, 0, "recursive lock");
	expect(pthread_mutex_lock(&m), 0, 0, "recursive relock");
	expect(pthread_mutex_unlock(&m), 0, 0, "recursive unlock");
	expect(pthread_mutex_unlock(&m), 0, 0, "recursive unlock 2");
	expect(pthread_mutex_trylock(&m), 0, 0, "recursive trylock");
	expect(pthread_mutex_unlock(&m), 0, 0, "recursive unlock 3");
	pthread_mutex_destroy(&m);
	pthread_mutexattr_destroy(&a);
}

static pthread_mutex_t robust;

static void *die_holding(void *a)
{
	pthread_mutex_lock(&robust);
	return a;
}

static void robust_errors(void)
{
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&robust, &a);
	pthread_join(helper(die_holding), NULL);
	errno = SENTINEL;
	expect(pthread_mutex_lock(&robust), EOWNERDEAD, 0, "robust lock, owner dead");
	expect(pthread_mutex_consistent(&robust), 0, 0, "consistent");
	expect(pthread_mutex_unlock(&robust), 0, 0, "robust unlock");
	expect(pthread_mutex_lock(&robust), 0, 0, "robust lock");
	expect(pthread_mutex_unlock(&robust), 0, 0, "robust unlock 2");
	pthread_mutexattr_destroy(&a);
}

static void rwlock_errors(void)
{
	pthread_rwlock_t l = PTHREAD_RWLOCK_INITIALIZER;
	expect(pthread_rwlock_wrlock(&l), 0, 0, "wrlock");
	expect(pthread_rwlock_rdlock(&l), EDEADLK, 0, "rdlock under own wrlock");
	expect(pthread_rwlock_wrlock(&l), EDEADLK, 0, "wrlock under own wrlock");
	expect(pthread_rwlock_unlock(&l), 0, 0, "unlock");
	expect(pthread_rwlock_rdlock(&l), 0, 0, "rdlock");
	expect(pthread_rwlock_rdlock(&l), 0, 0, "rdlock again");
	expect(pthread_rwlock_trywrlock(&l), EBUSY, 0, "trywrlock under readers");
	expect(pthread_rwlock_unlock(&l), 0, 0, "unlock");
	expect(pthread_rwlock_unlock(&l), 0, 0, "unlock 2");
}

static void wait_errors(void)
{
	struct timespec past = { 1, 0 };
	siginfo_t info;
	int st;
	pthread_mutex_lock(&mutex);
	expect(pthread_cond_timedwait(&cond, &mutex, &past), ETIMEDOUT, 0, "cond_timedwait, past");
	struct timespec until = deadline(ms);     /* timed out: a blocking call */
	expect(pthread_cond_timedwait(&cond, &mutex, &until), ETIMEDOUT, 0, "cond_timedwait");
	expect(pthread_mutex_trylock(&mutex), EBUSY, 0, "mutex held again after the wait");
	pthread_mutex_unlock(&mutex);
	expect(sem_timedwait(&sem, &past), -1, ETIMEDOUT, "sem_timedwait, past");
	until = deadline(ms);
	expect(sem_timedwait(&sem, &until), -1, ETIMEDOUT, "sem_timedwait");
	struct timespec bad_ts = { 0, -1 };
	expect(sem_timedwait(&sem, &bad_ts), -1, EINVAL, "sem_timedwait, bad time");
	sem_post(&sem);
	expect(sem_wait(&sem), 0, 0, "sem_wait, posted");
	expect(pthread_join(pthread_self(), NULL), EDEADLK, 0, "join self");
	expect(waitpid(-1, &st, 0), -1, ECHILD, "waitpid, no child");
	expect(wait(&st), -1, ECHILD, "wait, no child");
	expect(wait4(-1, &st, 0, NULL), -1, ECHILD, "wait4, no child");
	expect(waitid(P_ALL, 0, &info, WEXITED), -1, ECHILD, "waitid, no child");
	pid_t pid = napping_child(5);
	expect(waitpid(pid, &st, WNOHANG), 0, 0, "waitpid WNOHANG, running");
	expect(waitpid(pid, &st, 0), pid, 0, "waitpid");   /* a blocking call */
	check(WIFEXITED(st) && WEXITSTATUS(st) == 5, "waitpid status", st);
	st = system("exit 3");
	check(WIFEXITED(st) && WEXITSTATUS(st) == 3, "system status", st);
	errno = SENTINEL;
}

static void fd_errors(void)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	struct mmsghdr m;
	memset(&m, 0, sizeof(m));
	expect(flock(-1, LOCK_EX), -1, EBADF, "flock");
	expect(lockf(-1, F_LOCK, 0), -1, EBADF, "lockf");
	expect(fcntl(-1, F_SETLKW, &fl), -1, EBADF, "fcntl F_SETLKW");
	expect(fcntl(-1, F_OFD_SETLKW, &fl), -1, EBADF, "fcntl F_OFD_SETLKW");
	expect(sendfile(-1, -1, NULL, 1), -1, EBADF, "sendfile");
	expect(splice(-1, NULL, -1, NULL, 1, 0), -1, EBADF, "splice");
	expect(recvmmsg(-1, &m, 1, 0, NULL), -1, EBADF, "recvmmsg");
	expect(sendmmsg(-1, &m, 1, 0), -1, EBADF, "sendmmsg");
	int fd = open(lock_path, O_RDWR | O_CREAT, 0600);
	expect(flock(fd, LOCK_EX), 0, 0, "flock");
	expect(lockf(fd, F_TEST, 0), 0, 0, "lockf F_TEST");
	expect(fcntl(fd, F_SETLKW, &fl), 0, 0, "fcntl F_SETLKW");
	fl.l_type = F_UNLCK;       /* an OFD lock waits even for its own process's record lock */
	expect(fcntl(fd, F_SETLK, &fl), 0, 0, "fcntl F_UNLCK");
	fl.l_type = F_WRLCK;
	fl.l_pid = 0;
	expect(fcntl(fd, F_OFD_SETLKW, &fl), 0, 0, "fcntl F_OFD_SETLKW");
	close(fd);
	pid_t pid = lock_holder('f');
	fd = open(lock_path, O_RDWR);
	errno = SENTINEL;
	expect(flock(fd, LOCK_EX | LOCK_NB), -1, EWOULDBLOCK, "flock LOCK_NB, held");
	close(fd);
	reap(pid, 0);
	errno = SENTINEL;
}

static void signal_errors(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	struct timespec zero = { 0, 0 }, t = { ms / 1000, (ms % 1000) * 1000000L }, bad_ts = { 0, -1 };
	expect(sigtimedwait(&set, NULL, &zero), -1, EAGAIN, "sigtimedwait, zero");
	expect(sigtimedwait(&set, NULL, &t), -1, EAGAIN, "sigtimedwait");   /* a blocking call */
	expect(sigtimedwait(&set, NULL, &bad_ts), -1, EINVAL, "sigtimedwait, bad time");
	siginfo_t info;
	pthread_kill(pthread_self(), SIGUSR1);
	expect(sigwaitinfo(&set, &info), SIGUSR1, 0, "sigwaitinfo, pending");
	check(info.si_signo == SIGUSR1, "si_signo", info.si_signo);
}

static void errors(void)
{
	mutex_errors();
	robust_errors();
	rwlock_errors();
	wait_errors();
	fd_errors();
	signal_errors();
}

struct mode {
	const char *name;
	void (*fn)(void);
};

#define M(name) { #name, wait_in_##name }
static const struct mode modes[] = {
	M(mutex), M(rdlock), M(wrlock), M(cond_wait), M(cond_timedwait), M(sem_wait), M(sem_timedwait),
	M(join), M(waitpid), M(wait), M(wait4), M(waitid), M(system), M(flock), M(lockf), M(fcntl),
	M(sigtimedwait), M(sigwaitinfo), M(splice), M(sendfile), M(recvmmsg), { "errors", errors },
};

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (argc > 2)
		ms = atoi(argv[2]);
	const struct mode *mode = NULL;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (strcmp(modes[i].name, argv[1]) == 0)
			mode = &modes[i];
	if (!mode)
		return 2;
	main_thread = pthread_self();
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);   /* before any thread: only sigwait takes it */
	sem_init(&sem, 0, 0);
	unlink(lock_path);
	int ep = epoll_create1(0);
	struct epoll_event ev;
	epoll_wait(ep, &ev, 1, 0);      /* a loop thread from here on */
	errno = SENTINEL;
	mode->fn();
	epoll_wait(ep, &ev, 1, 0);      /* the iteration ends */
	unlink(lock_path);
	if (bad)
		return 1;
	printf("OK %d\n", (int)getpid());
	return 0;
}
