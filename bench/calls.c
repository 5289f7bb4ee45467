/* calls.c — what one interposed call costs, measured inside one process.
 *
 *   calls SECONDS THREADS ROW...      ROW = OP:MODE
 *   OP   read  (1 byte from an empty non-blocking pipe: EAGAIN; the shim
 *              does not time it, as the fd cannot block)
 *        readb (0 bytes from a blocking pipe: the shim times it)
 *        write (1 byte to /dev/null)
 *        epoll (epoll_wait on an empty epoll fd, timeout 0)
 *        mutex (pthread_mutex_lock of a free mutex, then unlock: the shim
 *              tries the lock first and times only a contended one)
 *   MODE plain: a thread that never waited in a loop wait
 *        loop:  a thread that waited in epoll_wait once first (a loop thread)
 *
 * Each row runs THREADS fresh threads at once for SECONDS.  Every thread
 * alternates blocks of calls made through two function pointers: "direct",
 * libc's own function (dlopen("libc.so.6", RTLD_NOLOAD)), and "hooked",
 * whatever the program itself would call (dlsym(RTLD_DEFAULT)): the shim's
 * function when it is preloaded, libc's again when not.  Both are indirect
 * calls from the same code, so a bare run measures ~0 and a shimmed run
 * measures what the shim adds; bench/bench.py subtracts the two.  Blocks are
 * timed with the thread's CPU clock, so threads preempted on a busy machine
 * are not charged for the time they did not run; the figure is the median
 * over blocks of (hooked - direct) per call, in ABBA order against drift.
 *
 * With BENCH_STUB=1 (and build/bench/libstub.so preloaded after the shim)
 * the calls go to fds the stub answers without a syscall: the same hooks,
 * minus the kernel's noise, for the hook's own cost to the nanosecond.
 *
 * Prints one line per row:
 *   ROW op mode threads diff_ns hooked_ns direct_ns blocks tid,tid,...  */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

#define STUB_FD 900              /* bench/libstub.c answers fds >= this */
#define MAX_BLOCKS 100000

enum op { OP_READ, OP_WRITE, OP_EPOLL, OP_READB, OP_MUTEX };

typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef int (*epoll_fn)(int, struct epoll_event *, int, int);
typedef int (*lock_fn)(pthread_mutex_t *);

struct fns {
	read_fn read;
	write_fn write;
	epoll_fn epoll_wait;
	lock_fn lock;
};

static struct fns direct, hooked;
static int stub;
static double seconds, block_ns = 1e5;
static __thread pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;

struct worker {
	pthread_t th;
	enum op op;
	int loop;
	pid_t tid;
	double *pairs;          /* (hooked - direct) ns per call, per block pair */
	double *h, *d;
	int n;
};

static double cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The one loop both sides run: only the function pointer differs. */
static __attribute__((noinline)) double block(const struct fns *f, enum op op, long k, int fd)
{
	char c = 0;
	struct epoll_event ev;
	double t0 = cpu_ns();
	switch (op) {
	case OP_READ:
		for (long i = 0; i < k; i++)
			f->read(fd, &c, 1);
		break;
	case OP_READB:
		for (long i = 0; i < k; i++)
			f->read(fd, &c, 0);
		break;
	case OP_WRITE:
		for (long i = 0; i < k; i++)
			f->write(fd, &c, 1);
		break;
	case OP_EPOLL:
		for (long i = 0; i < k; i++)
			f->epoll_wait(fd, &ev, 1, 0);
		break;
	case OP_MUTEX:
		for (long i = 0; i < k; i++) {
			f->lock(&mutex);
			pthread_mutex_unlock(&mutex);
		}
		break;
	}
	return (cpu_ns() - t0) / (double)k;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	if (n == 0)
		return 0;
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	int p[2], b[2], ep = epoll_create1(EPOLL_CLOEXEC), dn = open("/dev/null", O_WRONLY | O_CLOEXEC);
	struct epoll_event ev;
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0 || pipe2(b, O_CLOEXEC) != 0 || ep < 0 || dn < 0) {
		perror("calls: setup");
		exit(1);
	}
	w->tid = (pid_t)syscall(SYS_gettid);
	if (w->loop)
		hooked.epoll_wait(ep, &ev, 1, 0);      /* now a loop thread */
	int fd = w->op == OP_READ ? p[0] : w->op == OP_READB ? b[0] : w->op == OP_WRITE ? dn : ep;
	if (w->op == OP_MUTEX)
		fd = -1;
	else if (stub) {
		/* the stub's fd takes the pipe's mode (the shim follows dup2);
		 * left open at the end, as other threads may still use it */
		int from = fd, stubfd = STUB_FD + (int)w->op;
		fd = (w->op == OP_READ || w->op == OP_READB) ? dup2(from, stubfd) : stubfd;
		if (fd < 0) {
			perror("calls: dup2");
			exit(1);
		}
	}

	/* block size: about BENCH_BLOCK_US (100) us of direct calls */
	long k = 64;
	for (int i = 0; i < 8; i++)
		block(&direct, w->op, k, fd);          /* warm up both paths */
	for (int i = 0; i < 8; i++)
		block(&hooked, w->op, k, fd);
	double per = block(&direct, w->op, 256, fd);
	k = per > 0 ? (long)(block_ns / per) : 100000;
	if (k < 16)
		k = 16;

	double end = wall_s() + seconds;
	for (int i = 0; w->n < MAX_BLOCKS && (w->n < 8 || wall_s() < end); i++) {
		double h, d;
		if (i % 2) {
			h = block(&hooked, w->op, k, fd);
			d = block(&direct, w->op, k, fd);
		} else {
			d = block(&direct, w->op, k, fd);
			h = block(&hooked, w->op, k, fd);
		}
		w->h[w->n] = h;
		w->d[w->n] = d;
		w->pairs[w->n++] = h - d;
	}
	close(p[0]);
	close(p[1]);
	close(b[0]);
	close(b[1]);
	close(ep);
	close(dn);
	return NULL;
}

static int parse_row(const char *s, enum op *op, int *loop)
{
	const char *c = strchr(s, ':');
	if (!c)
		return -1;
	size_t n = (size_t)(c - s);
	if (n == 4 && !strncmp(s, "read", 4))
		*op = OP_READ;
	else if (n == 5 && !strncmp(s, "write", 5))
		*op = OP_WRITE;
	else if (n == 5 && !strncmp(s, "epoll", 5))
		*op = OP_EPOLL;
	else if (n == 5 && !strncmp(s, "readb", 5))
		*op = OP_READB;
	else if (n == 5 && !strncmp(s, "mutex", 5))
		*op = OP_MUTEX;
	else
		return -1;
	if (!strcmp(c + 1, "loop"))
		*loop = 1;
	else if (!strcmp(c + 1, "plain"))
		*loop = 0;
	else
		return -1;
	return 0;
}

static void run_row(const char *spec, int nthreads)
{
	static const char *const names[] = { "read", "write", "epoll", "readb", "mutex" };
	struct worker *ws = calloc((size_t)nthreads, sizeof(*ws));
	enum op op;
	int loop;
	if (!ws || parse_row(spec, &op, &loop) != 0) {
		fprintf(stderr, "calls: bad row '%s' (want read|readb|write|epoll|mutex:plain|loop)\n", spec);
		exit(2);
	}
	for (int i = 0; i < nthreads; i++) {
		ws[i].op = op;
		ws[i].loop = loop;
		ws[i].pairs = malloc(MAX_BLOCKS * sizeof(double));
		ws[i].h = malloc(MAX_BLOCKS * sizeof(double));
		ws[i].d = malloc(MAX_BLOCKS * sizeof(double));
		if (!ws[i].pairs || !ws[i].h || !ws[i].d || pthread_create(&ws[i].th, NULL, work, &ws[i])) {
			fprintf(stderr, "calls: cannot start thread\n");
			exit(1);
		}
	}
	/* per thread medians, then the median over threads */
	double *md = malloc(sizeof(double) * (size_t)nthreads * 3);
	double *mh = md + nthreads, *mdir = mh + nthreads;
	int blocks = 0;
	for (int i = 0; i < nthreads; i++) {
		pthread_join(ws[i].th, NULL);
		md[i] = median(ws[i].pairs, ws[i].n);
		mh[i] = median(ws[i].h, ws[i].n);
		mdir[i] = median(ws[i].d, ws[i].n);
		blocks += ws[i].n;
	}
	printf("ROW %s %s %d %.3f %.3f %.3f %d ", names[op], loop ? "loop" : "plain", nthreads,
	       median(md, nthreads), median(mh, nthreads), median(mdir, nthreads), blocks);
	for (int i = 0; i < nthreads; i++) {
		printf("%s%d", i ? "," : "", (int)ws[i].tid);
		free(ws[i].pairs);
		free(ws[i].h);
		free(ws[i].d);
	}
	printf("\n");
	fflush(stdout);
	free(md);
	free(ws);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: calls SECONDS THREADS OP:MODE...\n");
		return 2;
	}
	seconds = atof(argv[1]);
	int nthreads = atoi(argv[2]);
	stub = getenv("BENCH_STUB") && atoi(getenv("BENCH_STUB"));
	if (getenv("BENCH_BLOCK_US"))
		block_ns = atof(getenv("BENCH_BLOCK_US")) * 1e3;
	void *libc = dlopen(stub ? "libstub.so" : "libc.so.6", RTLD_NOW | RTLD_NOLOAD);
	if (!libc) {
		fprintf(stderr, "calls: %s is not loaded (%s)\n", stub ? "libstub.so" : "libc.so.6", dlerror());
		return 2;
	}
	direct.read = (read_fn)dlsym(libc, "read");
	direct.write = (write_fn)dlsym(libc, "write");
	direct.epoll_wait = (epoll_fn)dlsym(libc, "epoll_wait");
	hooked.read = (read_fn)dlsym(RTLD_DEFAULT, "read");
	hooked.write = (write_fn)dlsym(RTLD_DEFAULT, "write");
	hooked.epoll_wait = (epoll_fn)dlsym(RTLD_DEFAULT, "epoll_wait");
	/* the stub has no locks: libc's own, whichever run */
	direct.lock = (lock_fn)dlsym(dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD), "pthread_mutex_lock");
	hooked.lock = (lock_fn)dlsym(RTLD_DEFAULT, "pthread_mutex_lock");
	if (!direct.read || !direct.write || !direct.epoll_wait || !hooked.read || !direct.lock || !hooked.lock) {
		fprintf(stderr, "calls: cannot find read/write/epoll_wait/pthread_mutex_lock\n");
		return 2;
	}
	if (nthreads < 1 || nthreads > 1024 || seconds <= 0) {
		fprintf(stderr, "calls: bad SECONDS or THREADS\n");
		return 2;
	}
	for (int i = 3; i < argc; i++)
		run_row(argv[i], nthreads);
	return 0;
}
