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
#include "shim.h"

#include <dirent.h>
#include <fcntl.h>
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
#define SHM_VERSION 1

char as_shm_prefix[128];                /* "" = rings are anonymous memory */
static struct as_shm_proc *proc;
int as_recovering;
uint64_t as_recover_end;

static void proc_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s.proc", as_shm_prefix);
}

static void ring_path(char *buf, size_t len, pid_t tid)
{
	snprintf(buf, len, "%s.%d", as_shm_prefix, (int)tid);
}

static void *map_new(const char *path, size_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return NULL;
	void *p = MAP_FAILED;
	if (ftruncate(fd, (off_t)size) == 0)
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		unlink(path);
		return NULL;
	}
	return p;
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
	if (as_cfg.flight || !as_cfg.flush_ms || as_recovering)
		return;
	char prefix[sizeof(as_shm_prefix)], path[sizeof(as_shm_prefix) + 16];
	snprintf(prefix, sizeof(prefix), SHM_DIR "/asyncshim.%d.%llu", (int)pid, (unsigned long long)trace_ino);
	memcpy(as_shm_prefix, prefix, sizeof(prefix));
	proc_path(path, sizeof(path));
	proc = map_new(path, sizeof(*proc));
	if (!proc) {
		as_shm_prefix[0] = '\0';
		return;
	}
	proc->version = SHM_VERSION;
	proc->thread_size = sizeof(struct as_thread);
	proc->pid = pid;
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
 * memory instead). */
struct as_thread *as_shm_ring(size_t size, pid_t tid)
{
	if (!proc)
		return NULL;
	char path[sizeof(as_shm_prefix) + 16];
	ring_path(path, sizeof(path), tid);
	struct as_thread *t = map_new(path, size);
	if (t)
		t->shm_tid = tid;
	return t;
}

/* Remove file PATH mapped at ADDR.  A process that dropped privileges
 * since it made the file (an nginx worker turning www-data) may not unlink
 * it from the sticky /dev/shm: then free its memory through the mapping and
 * leave an empty file, which reads as nothing to recover. */
static void remove_file(const char *path, void *addr, size_t size)
{
	if (unlink(path) != 0)
		madvise(addr, size, MADV_REMOVE);
}

/* The ring is drained: nothing left to recover. */
void as_shm_ring_done(struct as_thread *t)
{
	if (!t->shm_tid || !as_shm_prefix[0])
		return;
	char path[sizeof(as_shm_prefix) + 16];
	ring_path(path, sizeof(path), t->shm_tid);
	remove_file(path, t, t->map_size);
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
	remove_file(path, proc, sizeof(*proc));
	munmap(proc, sizeof(*proc));
	proc = NULL;
}

/* Before this process's effective uid becomes EUID ((uid_t)-1: unchanged).
 * Keeps errno: the hooks call it before the real function. */
void as_shm_chown(uid_t euid)
{
	struct as_thread *t;
	if (!proc || euid == (uid_t)-1 || geteuid() != 0 || euid == 0)
		return;
	int saved = errno;
	char path[sizeof(as_shm_prefix) + 16];
	proc_path(path, sizeof(path));
	if (chown(path, euid, (gid_t)-1) != 0) {
		errno = saved;
		return;
	}
	rcu_read_lock();
	cds_list_for_each_entry_rcu(t, &as_threads, node) {
		if (t->shm_tid) {
			ring_path(path, sizeof(path), t->shm_tid);
			if (chown(path, euid, (gid_t)-1) != 0)
				break;
		}
	}
	rcu_read_unlock();
	errno = saved;
}

/* A fork child: the files are the parent's (never removed from here); the
 * child's own come with its own trace file. */
void as_shm_after_fork_child(void)
{
	if (proc)
		munmap(proc, sizeof(*proc));
	proc = NULL;
	as_shm_prefix[0] = '\0';
}

/* ---- recovery (a helper process started by `asyncshim recover`) ---- */

static int recover_fail(const char *what, const char *path)
{
	fprintf(stderr, "asyncshim recover: %s: %s\n", path, what);
	return 2;
}

/* Map ring file NAME of PREFIX's dead process and put it on the registry
 * as an exited thread.  Rings that do not look like ours are left alone. */
static int adopt_ring(const char *path)
{
	int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(struct as_thread) + 64 * sizeof(struct as_record)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	struct as_thread *t = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (t == MAP_FAILED)
		return -1;
	uint64_t cap = t->cap, head = t->head, tail = t->tail;
	if (t->map_size != (size_t)st.st_size || !cap || (cap & (cap - 1)) ||
	    sizeof(*t) + cap * sizeof(struct as_record) > t->map_size || head - tail > cap || tail > head) {
		munmap(t, (size_t)st.st_size);
		return -1;
	}
	t->dead = 1;                    /* its last thread record says exited */
	for (uint64_t i = tail; i < head; i++) {
		const struct as_record *r = &t->ring[i & (cap - 1)];
		if ((r->kind == AS_REC_ITER || r->kind == AS_REC_BLOCK) && r->ts + r->dur > as_recover_end)
			as_recover_end = r->ts + r->dur;
	}
	if (t->iter_start > as_recover_end)
		as_recover_end = t->iter_start;
	t->name[sizeof(t->name) - 1] = '\0';
	t->c_reclaim_next = NULL;
	cds_list_add_tail_rcu(&t->node, &as_threads);
	return 0;
}

/* Restore what the dead process's collector knew, adopt its rings, and
 * let the collector write them to TRACE and remove the files. */
int as_recover(const char *prefix, const char *trace)
{
	char path[sizeof(as_shm_prefix) + 280];    /* also /dev/shm/ + a d_name */
	if (!trace || strlen(prefix) >= sizeof(as_shm_prefix) || strncmp(prefix, SHM_DIR "/asyncshim.", 19))
		return recover_fail("not a ring prefix", prefix);
	as_recovering = 1;
	memcpy(as_shm_prefix, prefix, strlen(prefix) + 1);
	proc_path(path, sizeof(path));
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct as_shm_proc p;
	ssize_t n = fd >= 0 ? read(fd, &p, sizeof(p)) : -1;
	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof(p) || p.magic != SHM_MAGIC || p.version != SHM_VERSION)
		return recover_fail("no state of a killed process (already recovered?)", path);
	if (p.thread_size != sizeof(struct as_thread))
		return recover_fail("written by another version of asyncshim", path);
	as_cfg = p.cfg;
	as_cfg.gate = 0;                /* the gate belonged to the dead process */
	as_cfg.flight = 0;
	as_use_tsc = p.use_tsc;
	as_tsc0 = p.tsc0;
	as_mono0 = p.mono0;
	as_ns_per_tick = p.ns_per_tick;
	as_stacks_continue(p.nstacks);

	const char *slash = strrchr(prefix, '/');
	size_t blen = strlen(slash + 1);
	DIR *d = opendir(SHM_DIR);
	if (!d)
		return recover_fail("cannot open", SHM_DIR);
	unsigned rings = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		const char *s = e->d_name;
		if (strncmp(s, slash + 1, blen) || s[blen] != '.' || !s[blen + 1] ||
		    strspn(s + blen + 1, "0123456789") != strlen(s + blen + 1))
			continue;
		snprintf(path, sizeof(path), "%s/%s", SHM_DIR, s);
		rings += adopt_ring(path) == 0;
	}
	closedir(d);
	int r = as_collector_recover(trace);
	proc_path(path, sizeof(path));
	if (r == 0)
		unlink(path);
	else
		return recover_fail("cannot append to the trace", trace);
	fprintf(stderr, "asyncshim recover: %s: %u ring%s recovered\n", trace, rings, rings == 1 ? "" : "s");
	return 0;
}
