/* shm.c — rings that outlive a killed process.
 *
 * SIGKILL cannot be caught, so whatever the collector has not yet written
 * when it arrives would die with the process.  Instead each loop thread's
 * ring (struct as_thread: header and records) is a MAP_SHARED mapping of a
 * file in /dev/shm, and a small "proc" file beside them keeps what is needed
 * to read them: the options, the clock's calibration and how many stacks the
 * trace already has.  The collector publishes a ring's tail only after the
 * records before it are in the trace file (collector/collector.c), so after
 * a SIGKILL the trace holds everything up to each tail and the rings hold the
 * rest: `asyncshim recover TRACE` runs the same collector code over them
 * (as_recover below, in a helper process that preloads this library) and
 * appends the result to the trace.  A clean end deletes the files.
 *
 * Why tmpfs and not a file next to the trace: stores into a shared mapping
 * of a disk file can wait for writeback, which would block the program;
 * tmpfs pages are plain memory.  Without a usable /dev/shm the rings are
 * anonymous memory as before and the header says "rings": nil.
 *
 * Names: PREFIX.TID for rings and PREFIX.proc, where PREFIX is
 * /dev/shm/asyncshim.PID.INODE and INODE is the trace file's, so a forked
 * child or an exec'd image (each with its own trace file) never shares them.
 * The trace header records PREFIX ("rings"). */
#include "runtime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urcu-bp.h>
#include <urcu/rculist.h>

#define SHM_DIR "/dev/shm"
#define SHM_MAGIC 0x6873616d69687361ull   /* "asihmash" */
#define SHM_VERSION 2
#define SHM_RING_MAGIC (0x676e6972ull << 32 | SHM_VERSION)    /* "ring" */
#define SHM_MAX_RING ((size_t)(4u << 20) * 1024 + 2 * 4096)  /* buffer_kb's limit */

_Static_assert(AS_THREAD_SHARED == 4096, "the shared part of struct as_thread starts on its second page");

char as_shm_prefix[128];                /* "" = rings are anonymous memory */
static struct as_shm_proc *proc;
int as_recovering;
uint64_t as_recover_end;
unsigned as_shm_private_rings;          /* rings that could not be shared (another euid) */
unsigned as_shm_swept;                  /* killed processes whose files as_shm_sweep removed */
/* The files' owner: the effective uid when the first trace file was made
 * (kept by fork children).  A ring file owned by another user would let
 * that user write into memory this process reads. */
static uid_t owner;
static int owner_known;

static void proc_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s.proc", as_shm_prefix);
}

static void ring_path(char *buf, size_t len, pid_t tid)
{
	snprintf(buf, len, "%s.%d", as_shm_prefix, (int)tid);
}

/* Field 22 of /proc/PID/stat, the start time in clock ticks since boot:
 * with the pid it names one process, even after the pid is reused.
 * 0: unknown (no such process). */
uint64_t as_proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = as_sys_open(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	ssize_t n = as_sys_read(fd, buf, sizeof(buf) - 1);
	as_sys_close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');      /* the name may hold spaces and ')' */
	for (int field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* Only while every uid of this process is the owner: then no other user
 * can have made or be able to open the file (O_EXCL, 0600). */
static int may_share(void)
{
	uid_t r, e, s;
	return owner_known && getresuid(&r, &e, &s) == 0 && r == owner && e == owner && s == owner;
}

/* File PATH, new, of SIZE bytes, mapped shared (at ADDR if not NULL), or NULL. */
static void *map_new(const char *path, size_t size, void *addr)
{
	int fd = as_sys_open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return NULL;
	void *p = MAP_FAILED;
	if (ftruncate(fd, (off_t)size) == 0)
		p = mmap(addr, size, PROT_READ | PROT_WRITE, MAP_SHARED | (addr ? MAP_FIXED : 0), fd, 0);
	as_sys_close(fd);
	if (p == MAP_FAILED) {
		unlink(path);
		return NULL;
	}
	return p;
}

/* A ring of SIZE bytes whose first page (struct as_thread's pointers) is
 * private memory and the rest file PATH, shared; or NULL. */
static struct as_thread *map_ring(const char *path, size_t size)
{
	char *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return NULL;
	if (!map_new(path, size - AS_THREAD_SHARED, base + AS_THREAD_SHARED)) {
		munmap(base, size);
		return NULL;
	}
	return (struct as_thread *)base;
}

/* For a new trace file (the constructor, a fork child): set up PREFIX and
 * the proc file.  Flight mode (a window in memory, written on triggers) and
 * flush_ms=0 (written only when asked: asyncshim ctl dump) keep their
 * events in memory on purpose: no shared rings for them. */
void as_shm_init(pid_t pid, ino_t trace_ino)
{
	if (proc)
		munmap(proc, sizeof(*proc));    /* a fork child: the parent's */
	proc = NULL;
	as_shm_prefix[0] = '\0';
	if (!owner_known) {
		owner = geteuid();
		owner_known = 1;
	}
	if (as_cfg.flight || !as_cfg.flush_ms || as_recovering || !may_share())
		return;
	char prefix[sizeof(as_shm_prefix)], path[sizeof(as_shm_prefix) + 16];
	snprintf(prefix, sizeof(prefix), SHM_DIR "/asyncshim.%d.%llu", (int)pid, (unsigned long long)trace_ino);
	memcpy(as_shm_prefix, prefix, sizeof(prefix));
	proc_path(path, sizeof(path));
	proc = map_new(path, sizeof(*proc), NULL);
	if (!proc) {
		as_shm_prefix[0] = '\0';
		return;
	}
	proc->version = SHM_VERSION;
	proc->thread_size = sizeof(struct as_thread);
	proc->pid = pid;
	proc->start_time = as_proc_start_time(pid);
	proc->cfg = as_cfg;
	as_shm_sync(0);
	cmm_smp_wmb();
	proc->magic = SHM_MAGIC;
}

/* The collector, after each write: what a recovery needs to go on. */
void as_shm_sync(uint32_t nstacks)
{
	if (!proc)
		return;
	proc->use_tsc = as_use_tsc;
	proc->tsc0 = as_tsc0;
	proc->mono0 = as_mono0;
	proc->ns_per_tick = as_ns_per_tick;
	proc->nstacks = nstacks;
}

/* A ring of SIZE bytes for thread TID, or NULL (the caller maps anonymous
 * memory instead).  A process that changed its uids since the trace began
 * (an nginx worker turning www-data) gets private rings: counted, as a
 * SIGKILL loses what they hold. */
struct as_thread *as_shm_ring(size_t size, pid_t tid)
{
	if (!proc)
		return NULL;
	if (!may_share()) {
		__atomic_fetch_add(&as_shm_private_rings, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	char path[sizeof(as_shm_prefix) + 16];
	ring_path(path, sizeof(path), tid);
	struct as_thread *t = map_ring(path, size);
	if (t) {
		t->shm_tid = tid;
		t->shm_magic = SHM_RING_MAGIC;
		t->shm_start_time = proc->start_time;
	}
	return t;
}

static void sweep(void);

/* Remove file PATH mapped at ADDR.  A process that dropped privileges
 * since it made the file may not unlink it from the sticky /dev/shm: then
 * free its memory through the mapping but for the first page (which tells
 * whose it was), and leave the file to the owner's next process
 * (as_shm_sweep) or asyncshim recover. */
static void remove_file(const char *path, void *addr, size_t size)
{
	if (unlink(path) != 0 && size > 4096)
		madvise((char *)addr + 4096, size - 4096, MADV_REMOVE);
}

/* The ring is drained: nothing left to recover. */
void as_shm_ring_done(struct as_thread *t)
{
	if (!t->shm_tid || !as_shm_prefix[0])
		return;
	char path[sizeof(as_shm_prefix) + 16];
	ring_path(path, sizeof(path), t->shm_tid);
	remove_file(path, (char *)t + AS_THREAD_SHARED, t->map_size - AS_THREAD_SHARED);
}

/* Everything is in the trace (the final flush): remove the files; the
 * mappings stay, for threads still running. */
void as_shm_done(void)
{
	struct as_thread *t;
	if (!proc)
		return;
	char path[sizeof(as_shm_prefix) + 16];
	/* threads may still run (and store into their headers): unlink only */
	cds_list_for_each_entry_rcu(t, &as_threads, node) {
		if (t->shm_tid) {
			ring_path(path, sizeof(path), t->shm_tid);
			unlink(path);
		}
	}
	proc_path(path, sizeof(path));
	proc->magic = 0;
	unlink(path);
	munmap(proc, sizeof(*proc));
	proc = NULL;
	/* children that dropped privileges (nginx workers) could not remove
	 * theirs; they have ended by now if this was their master */
	sweep();
}

/* A fork child: the files are the parent's (never removed from here); the
 * child's own come with its own trace file. */
void as_shm_after_fork_child(void)
{
	if (proc)
		munmap(proc, sizeof(*proc));
	proc = NULL;
	as_shm_prefix[0] = '\0';
	as_shm_private_rings = 0;       /* the counts go to the parent's trace */
	as_shm_swept = 0;
}

/* ---- stale files (the collector thread, at start) ----
 * The files of a process killed with SIGKILL stay until asyncshim recover
 * reads them: up to buffer_kb of memory per loop thread, for good if no one
 * does.  The owner's next shimmed process removes those of dead processes
 * (a pid gone, or reused by a process that started at another time). */

static int open_owned(const char *path, uid_t uid, size_t min, size_t max, size_t *size);

/* The start time a file of ours records (after its layout's magic), or 0;
 * *KILLED: a proc file whose process never finished its trace. */
static uint64_t recorded_start(int fd, int is_proc, int *killed)
{
	if (is_proc) {
		struct as_shm_proc p;
		size_t len = offsetof(struct as_shm_proc, start_time) + sizeof(p.start_time);
		/* magic 0 (finished) still has the right pid and start time */
		if (as_sys_pread(fd, &p, len, 0) != (ssize_t)len || p.version != SHM_VERSION)
			return 0;
		*killed = p.magic == SHM_MAGIC;
		return p.start_time;
	}
	uint64_t v[2];
	if (as_sys_pread(fd, v, sizeof(v), 0) != (ssize_t)sizeof(v) || v[0] != SHM_RING_MAGIC)
		return 0;
	return v[1];
}

/* File NAME in /dev/shm is one of ours of a process that is gone: 1, or 2
 * if it is the state file of a process that was killed; else 0. */
static int stale(const char *name)
{
	int pid = 0, killed = 0;
	char path[300];
	if (sscanf(name, "asyncshim.%9d.", &pid) != 1 || pid <= 0 || pid == getpid())
		return 0;
	const char *suffix = strrchr(name, '.') + 1;
	int is_proc = !strcmp(suffix, "proc");
	if (!is_proc && strspn(suffix, "0123456789") != strlen(suffix))
		return 0;
	snprintf(path, sizeof(path), SHM_DIR "/%s", name);
	size_t size;
	int fd = open_owned(path, owner, 0, SHM_MAX_RING, &size);
	if (fd < 0)
		return 0;               /* another user's, or not a file of ours */
	uint64_t recorded = recorded_start(fd, is_proc, &killed);
	as_sys_close(fd);
	uint64_t now = as_proc_start_time(pid);
	if (now ? !recorded || recorded == now : kill(pid, 0) == 0 || errno != ESRCH)
		return 0;               /* alive, or it may be (start time unknown) */
	return 1 + killed;
}

/* The collector's fd table has no stderr: the count goes to the end record. */
static void sweep(void)
{
	if (as_recovering || !owner_known || !as_proc_start_time(getpid()))
		return;         /* without /proc, every process would look dead */
	DIR *d = opendir(SHM_DIR);
	if (!d)
		return;
	unsigned killed = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		int st = strncmp(e->d_name, "asyncshim.", 10) ? 0 : stale(e->d_name);
		if (!st)
			continue;
		char path[300];
		snprintf(path, sizeof(path), SHM_DIR "/%s", e->d_name);
		if (unlink(path) == 0 && st == 2)
			killed++;
	}
	closedir(d);
	__atomic_fetch_add(&as_shm_swept, killed, __ATOMIC_RELAXED);
}

/* At start, once (fork children inherit the flag). */
void as_shm_sweep(void)
{
	static int swept;
	if (!swept++)
		sweep();
}

/* ---- recovery (a helper process started by `asyncshim recover`) ----
 * Everything in /dev/shm is untrusted input: any user can make files
 * there, with any name and contents.  A file is used only if it belongs to
 * the trace's owner, is a plain file no one else may open, and its
 * contents are in bounds; it is read into private memory first, so no one
 * can change it between the checks and the use. */

static int recover_fail(const char *what, const char *path)
{
	fprintf(stderr, "asyncshim recover: %s: %s\n", path, what);
	return 2;
}

/* PREFIX is /dev/shm/asyncshim.PID.INODE, nothing else: its pid, or 0. */
static pid_t prefix_pid(const char *prefix)
{
	const char *s = prefix + strlen(SHM_DIR "/asyncshim.");
	size_t n1 = strspn(s, "0123456789");
	if (strncmp(prefix, SHM_DIR "/asyncshim.", strlen(SHM_DIR "/asyncshim.")) || n1 == 0 || n1 > 9 ||
	    s[n1] != '.' || strspn(s + n1 + 1, "0123456789") == 0 || s[n1 + 1 + strspn(s + n1 + 1, "0123456789")] ||
	    strlen(prefix) >= sizeof(as_shm_prefix))
		return 0;
	return (pid_t)atoi(s);
}

/* PATH opened for reading if it is a plain file of OWNER that no one else
 * may open, with one link, of MIN..MAX bytes; else -1. */
static int open_owned(const char *path, uid_t uid, size_t min, size_t max, size_t *size)
{
	struct stat st;
	int fd = as_sys_open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != uid || (st.st_mode & 07077) ||
	    st.st_nlink != 1 || st.st_size < 0 || (size_t)st.st_size < min || (size_t)st.st_size > max) {
		as_sys_close(fd);
		return -1;
	}
	*size = (size_t)st.st_size;
	return fd;
}

static int read_all(int fd, void *buf, size_t len)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = as_sys_pread(fd, (char *)buf + done, len - done, (off_t)done);
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

/* The shared part of a ring read from a file of SIZE bytes (with the
 * private page, SIZE + AS_THREAD_SHARED): in bounds? */
static int ring_sane(struct as_thread *t, size_t size)
{
	uint64_t cap = t->cap, head = t->head, tail = t->tail;
	if (t->shm_magic != SHM_RING_MAGIC || cap < 64 || (cap & (cap - 1)) || cap > (size - sizeof(*t)) / sizeof(struct as_record) ||
	    tail > head || head - tail > cap || t->c_nsamples > AS_STALL_SAMPLES)
		return 0;
	if (t->c_drained < tail || t->c_drained > head)
		t->c_drained = tail;
	t->name[sizeof(t->name) - 1] = '\0';
	return 1;
}

/* Read ring file PATH of thread TID of the dead process and put it on the
 * registry as an exited thread.  Files that do not pass are left alone. */
static int adopt_ring(const char *path, pid_t tid, uid_t uid)
{
	size_t fsize, min = sizeof(struct as_thread) - AS_THREAD_SHARED + 64 * sizeof(struct as_record);
	int fd = open_owned(path, uid, min, SHM_MAX_RING, &fsize);
	if (fd < 0)
		return -1;
	size_t size = fsize + AS_THREAD_SHARED;
	struct as_thread *t = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ok = t != MAP_FAILED && read_all(fd, (char *)t + AS_THREAD_SHARED, fsize) == 0;
	as_sys_close(fd);
	if (!ok || !ring_sane(t, size)) {
		if (t != MAP_FAILED)
			munmap(t, size);
		return -1;
	}
	t->map_size = size;
	t->tid = tid;
	t->shm_tid = tid;               /* the collector removes the file once drained */
	t->dead = 1;                    /* its last thread record says exited */
	uint64_t cap = t->cap;
	for (uint64_t i = t->tail; i < t->head; i++) {
		const struct as_record *r = &t->ring[i & (cap - 1)];
		if ((r->kind == AS_REC_ITER || r->kind == AS_REC_BLOCK) && r->ts + r->dur > as_recover_end)
			as_recover_end = r->ts + r->dur;
	}
	if (t->iter_start > as_recover_end)
		as_recover_end = t->iter_start;
	cds_list_add_tail_rcu(&t->node, &as_threads);
	return 0;
}

/* The owner the files must have: the trace's (asyncshim recover says),
 * and the caller's own unless the caller is root. */
static int recover_owner(uid_t *uid)
{
	const char *s = getenv("ASYNCSHIM_RECOVER_OWNER");
	*uid = s && *s && strspn(s, "0123456789") == strlen(s) ? (uid_t)strtoul(s, NULL, 10) : getuid();
	return getuid() == 0 || *uid == getuid() ? 0 : -1;
}

static int read_proc(const char *path, uid_t uid, pid_t pid, struct as_shm_proc *p)
{
	size_t size;
	int fd = open_owned(path, uid, sizeof(*p), sizeof(*p), &size);
	if (fd < 0)
		return recover_fail("no state of a killed process (already recovered, or not its owner's)", path);
	int r = read_all(fd, p, sizeof(*p));
	as_sys_close(fd);
	if (r != 0 || p->magic != SHM_MAGIC)
		return recover_fail("no state of a killed process (already recovered?)", path);
	if (p->version != SHM_VERSION || p->thread_size != sizeof(struct as_thread))
		return recover_fail("written by another version of asyncshim", path);
	if (p->pid != pid || p->cfg.stack_depth < 1 || p->cfg.stack_depth > AS_STACK_MAX)
		return recover_fail("not a state file of asyncshim", path);
	p->cfg.out[sizeof(p->cfg.out) - 1] = '\0';
	p->cfg.suppress[sizeof(p->cfg.suppress) - 1] = '\0';
	p->cfg.raw[sizeof(p->cfg.raw) - 1] = '\0';
	return 0;
}

/* asyncshim run saw the process exit with a status, yet it never made its
 * final flush: it ended by a raw exit_group (Go's runtime does, from any
 * thread), which runs no atexit handler and no destructor.  Else it was
 * killed. */
static const char *recover_reason(int *status)
{
	const char *s = getenv("ASYNCSHIM_RECOVER_STATUS");
	*status = -1;
	if (!s || !*s || strlen(s) > 3 || strspn(s, "0123456789") != strlen(s) || atoi(s) > 255)
		return "killed";
	*status = atoi(s);
	return "exit_group";
}

/* Restore what the dead process's collector knew, adopt its rings, and
 * let the collector write them to TRACE and remove the files. */
int as_recover(const char *prefix, const char *trace)
{
	char path[sizeof(as_shm_prefix) + 280];    /* also /dev/shm/ + a d_name */
	pid_t pid = prefix_pid(prefix);
	uid_t uid;
	if (!trace || !pid)
		return recover_fail("not a ring prefix", prefix);
	if (recover_owner(&uid) != 0)
		return recover_fail("not the caller's", trace);
	as_recovering = 1;
	memcpy(as_shm_prefix, prefix, strlen(prefix) + 1);
	proc_path(path, sizeof(path));
	struct as_shm_proc p;
	if (read_proc(path, uid, pid, &p) != 0)
		return 2;
	as_cfg = p.cfg;
	as_cfg.gate = 0;                /* the gate belonged to the dead process */
	as_cfg.flight = 0;
	as_use_tsc = p.use_tsc;
	as_tsc0 = p.tsc0;
	as_mono0 = p.mono0;
	as_ns_per_tick = p.ns_per_tick;
	as_stacks_continue(p.nstacks);

	const char *base = strrchr(prefix, '/') + 1;
	size_t blen = strlen(base);
	DIR *d = opendir(SHM_DIR);
	if (!d)
		return recover_fail("cannot open", SHM_DIR);
	unsigned rings = 0, refused = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		const char *s = e->d_name, *tid = s + blen + 1;
		if (strncmp(s, base, blen) || s[blen] != '.' || !*tid || strlen(tid) > 9 ||
		    strspn(tid, "0123456789") != strlen(tid))
			continue;
		snprintf(path, sizeof(path), "%s/%s", SHM_DIR, s);
		if (adopt_ring(path, (pid_t)atoi(tid), uid) == 0)
			rings++;
		else
			refused++;
	}
	closedir(d);
	int status;
	const char *reason = recover_reason(&status);
	int r = as_collector_recover(trace, reason, status);
	proc_path(path, sizeof(path));
	if (r == 0)
		unlink(path);
	else
		return recover_fail("cannot append to the trace", trace);
	if (getenv("ASYNCSHIM_RECOVER_NAME"))  /* TRACE is a copy, renamed over it */
		trace = getenv("ASYNCSHIM_RECOVER_NAME");
	fprintf(stderr, "asyncshim recover: %s: %u ring%s recovered\n", trace, rings, rings == 1 ? "" : "s");
	if (refused)
		fprintf(stderr, "asyncshim recover: %s: %u file%s named like its rings left alone (wrong owner, mode or contents)\n",
			trace, refused, refused == 1 ? "" : "s");
	return 0;
}
