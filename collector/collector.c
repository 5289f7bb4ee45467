/* collector.c — drains every thread's ring and appends msgpack to the trace.
 *
 * One background thread per process.  It wakes every drain_ms (or when asked
 * for the final flush), walks the RCU registry, copies records out of each
 * ring and converts ticks to ns since start.  The file is opened only while
 * writing (O_APPEND, checked to be the same inode we created), so a program
 * that closes or dup2()s over every fd cannot make us write somewhere else.
 * Record encodings are in docs/trace-format.md. */
#include "../preload/runtime.h"
#include "stacks.h"
#include "../preload/task.h"
#include "../preload/span.h"
#include "../preload/ctl.h"
#include "../format/pack.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <msgpack.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <urcu-bp.h>
#include <urcu/rculist.h>
#include <urcu/uatomic.h>

#define WRITE_BYTES (1u << 20)
/* With shared rings the collector writes after every drain; a drain of many
 * busy rings also writes on the way, at this size, so the buffer it packs
 * into stays small however many loop threads there are (16 KiB: one write
 * per 8,000 iterations at most; 64 KiB let the buffer of 9 busy threads
 * outgrow one's by 3 KiB a thread, bench/memory.c). */
#define DRAIN_BYTES (16u << 10)
/* about 40 KB packed */
#define ITERS_PER_RECORD 4096

static struct as_lock collect_mutex = AS_LOCK_INIT;
static char trace_path[PATH_MAX + 64];
static dev_t trace_dev;
static ino_t trace_ino;
static int trace_ok;
static int write_failed;         /* a write fell short: only the end record may follow */
static pthread_t collector_thread;
static int collector_running;
static int wake_word;            /* futex: bumped to wake the collector */
static int final_state;          /* 0 none, 1 requested, 2 done (futex) */
static const char *final_reason;
static uint64_t last_write_ns;
static uint64_t last_overhead_ns;
static msgpack_sbuffer sbuf;
static msgpack_packer pk;
static int ctl_disabled;         /* asyncshim ctl PID disable */
static int recorded;             /* a loop thread, or any record: the trace is worth keeping */
static int trace_removed;        /* the final flush removed it: it had nothing */
static pid_t collector_tid;

/* Where packed records go, chosen once at start (mode=): the trace file,
 * appended to as the rings are drained, or flight mode's window
 * (collector/flight.c), from which a trace file is written when something
 * triggers one.  Every op runs on the collector, under its lock. */
struct sink {
	const char *mode;       /* the header's "mode" */
	int (*start)(void);     /* recording starts: the process, a fork child */
	/* Mid-drain, DRAIN_BYTES or more packed.  DRAINED: every ring they
	 * came from is drained as far as this drain goes. */
	void (*spill)(int drained);
	/* a blocking call or stall of DUR_NS at T_NS (ns since start) */
	void (*note)(const char *trigger, uint64_t t_ns, uint64_t dur_ns);
	/* the slot of T's ring [TAIL, HEAD) a drain is cut after; HEAD: none */
	uint64_t (*cut)(const struct as_thread *t, uint64_t tail, uint64_t head);
	void (*flush)(uint64_t now);               /* after each periodic drain (mono ns) */
	void (*clear)(void);                       /* asyncshim ctl clear, before its drain */
	void (*ctl)(unsigned cmds, uint64_t now);  /* after the drain for ctl commands */
	void (*final)(const char *reason);         /* after the last drain */
	void (*resume)(void);                      /* a failed exec: recording goes on */
};
static const struct sink file_sink, flight_sink;
static const struct sink *sink = &file_sink;

void as_collector_lock(void)
{
	as_lock(&collect_mutex);
}

void as_collector_unlock(void)
{
	as_unlock(&collect_mutex);
}

/* From a signal handler too (preload/ctl.c): an atomic add and a syscall. */
void as_collector_wake(void)
{
	__atomic_fetch_add(&wake_word, 1, __ATOMIC_SEQ_CST);
	as_sys_futex(&wake_word, FUTEX_WAKE_PRIVATE, 1, NULL);
}

/* ---- time ---- */

/* Refine ns per tick against CLOCK_MONOTONIC once enough time has passed
 * for the estimate to beat the start-up one. */
static void clock_refine(void)
{
	if (!as_use_tsc)
		return;
	uint64_t m = as_mono_ns(), t = __rdtsc();
	if (m - as_mono0 < 50000000)
		return;
	CMM_STORE_SHARED(as_ns_per_tick, (double)(m - as_mono0) / (double)(t - as_tsc0));
	as_set_block_threshold();
}

uint64_t as_ticks_to_ns(uint64_t ticks)
{
	if (ticks <= as_tsc0)
		return 0;
	if (!as_use_tsc)
		return ticks - as_tsc0;
	return (uint64_t)((double)(ticks - as_tsc0) * as_ns_per_tick + 0.5);
}

/* ---- packing helpers ---- */

static void pack_str(const char *s)
{
	as_pack_str(&pk, s);
}

static void pack_key(enum as_trace_key k)
{
	as_pack_key(&pk, k);
}

static void pack_kv_str(enum as_trace_key k, const char *v)
{
	pack_key(k);
	pack_str(v);
}

static void pack_kv_u64(enum as_trace_key k, uint64_t v)
{
	pack_key(k);
	msgpack_pack_uint64(&pk, v);
}

static void pack_kv_i64(enum as_trace_key k, int64_t v)
{
	pack_key(k);
	msgpack_pack_int64(&pk, v);
}

static ssize_t read_file(const char *path, char *buf, size_t len)
{
	int fd = as_sys_open(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	ssize_t n = as_sys_read(fd, buf, len);
	as_sys_close(fd);
	return n;
}

static void pack_header(void)
{
	char exe[PATH_MAX] = "", cmd[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = '\0';
	ssize_t clen = read_file("/proc/self/cmdline", cmd, sizeof(cmd));
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	uint64_t since = as_mono_ns() - as_mono0;

	msgpack_pack_map(&pk, 11);
	as_pack_type(&pk, AS_T_header);
	pack_kv_u64(AS_K_format, AS_TRACE_FORMAT);
	pack_kv_i64(AS_K_pid, getpid());
	pack_kv_i64(AS_K_ppid, getppid());
	pack_kv_str(AS_K_exe, exe);
	pack_key(AS_K_argv);
	/* arguments can hold secrets (--db-password=...): argv[0] only,
	 * unless asked for */
	int argc = 0;
	for (ssize_t i = 0; i < clen && (argc == 0 || as_cfg.record_argv); i++)
		argc += cmd[i] == '\0';
	msgpack_pack_array(&pk, (size_t)argc);
	for (ssize_t i = 0, k = 0; k < argc; k++) {
		pack_str(cmd + i);
		i += (ssize_t)strlen(cmd + i) + 1;
	}
	pack_kv_u64(AS_K_start_unix_ns, (uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec - since);
	pack_kv_str(AS_K_clock, as_use_tsc ? "tsc" : "monotonic");
	pack_kv_str(AS_K_rings, as_shm_prefix[0] ? as_shm_prefix : NULL);
	pack_kv_str(AS_K_options_string, as_cfg.raw);
	pack_key(AS_K_options);
	msgpack_pack_map(&pk, 10);
	pack_kv_str(AS_K_out, as_cfg.out);
	pack_kv_u64(AS_K_block_ms, as_cfg.block_ms);
	pack_kv_u64(AS_K_stall_ms, as_cfg.stall_ms);
	pack_kv_u64(AS_K_stacks, as_cfg.stacks);
	pack_kv_u64(AS_K_stack_depth, as_cfg.stack_depth);
	pack_kv_u64(AS_K_buffer_kb, as_cfg.buffer_kb);
	pack_kv_u64(AS_K_flush_ms, as_cfg.flush_ms);
	pack_kv_str(AS_K_mode, sink->mode);
	pack_kv_u64(AS_K_flight_mb, as_cfg.flight_mb);
	pack_kv_u64(AS_K_trigger_ms, as_cfg.trigger_ms);
}

/* ---- the file ---- */

/* The trace fd is kept open (so a worker that drops privileges after fork
 * can still write) in the collector's own fd table (preload/fds.c): the
 * thread that creates the file closes its copy in the program's table once
 * the collector has taken it, so the program never sees it (an fd scan, a
 * table grown to hold it).  Where the collector cannot have a table of its
 * own, the fd stays in the program's: before each write it is checked to
 * still be our file; a program that closed every fd, or reused the number,
 * makes us reopen by path instead.  The number is then the program's: we
 * never close it. */
static int trace_fd = -1;

static int same_file(int fd)
{
	struct stat st;
	return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == trace_dev && st.st_ino == trace_ino;
}

/* In the collector's own table (only there: the program's must not grow)
 * the trace fd sits high, apart from the numbers the program uses: a tool
 * that follows fds by number across threads (TSan) cannot tell the two
 * tables apart. */
static int keep_high(int fd)
{
	if (fd < 0 || !as_tls.own_fds)
		return fd;
	int high = as_sys_fcntl(fd, F_DUPFD_CLOEXEC, 512);
	if (high < 0)
		return fd;
	as_sys_close(fd);
	return high;
}

/* The file appears under its name with its header already in it: it is
 * made unnamed (O_TMPFILE) or under a temporary name, written, then linked
 * into place, which fails like O_EXCL on an existing name and never
 * follows a symlink.  A process killed in between leaves no empty,
 * headerless trace that every tool would refuse. */
static int open_aside(const char *path, char *tmp, size_t tmplen)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;
	snprintf(dir, sizeof(dir), "%.*s", (int)n, n ? path : "/");
	tmp[0] = '\0';
	int fd = as_sys_open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC | O_APPEND, 0600);
	if (fd >= 0)
		return fd;
	/* no O_TMPFILE on this filesystem: a name readers do not take for a trace */
	snprintf(tmp, tmplen, "%s.%d.tmp", path, (int)getpid());
	return as_sys_open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_APPEND, 0600);
}

static int link_into_place(int fd, const char *tmp, const char *path)
{
	if (tmp[0])
		return link(tmp, path);
	if (linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != ENOENT && errno != EPERM)
		return -1;
	/* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc's link does not */
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
}

/* Write the whole header (packed in sbuf) or nothing. */
static int write_header(int fd)
{
	return as_sys_write_all(fd, sbuf.data, sbuf.size) == sbuf.size ? 0 : -1;
}

static void trace_name(char *path, size_t len, pid_t pid, int n)
{
	if (n == 0)
		snprintf(path, len, "%s.%d.msgpack", as_cfg.out, (int)pid);
	else
		snprintf(path, len, "%s.%d.%d.msgpack", as_cfg.out, (int)pid, n);
}

/* Named from N on: the first free name takes the file. */
static int link_first_free(int fd, const char *tmp, pid_t pid)
{
	for (int n = 0; n < 100; n++) {
		trace_name(trace_path, sizeof(trace_path), pid, n);
		if (link_into_place(fd, tmp, trace_path) == 0)
			return 0;
		if (errno != EEXIST)
			return -1;
		struct stat st;
		if (lstat(trace_path, &st) == 0 && S_ISLNK(st.st_mode))
			as_warn("asyncshim: %s is a symlink; not following it", trace_path);
		/* else an exec'd image of the same pid already wrote this name */
	}
	return -1;
}

/* Creates the trace file with its header in it.  The shared rings are
 * named after the file's inode, and the header names them. */
static int create_file(void)
{
	pid_t pid = getpid();
	char tmp[PATH_MAX + 96];
	struct stat st;
	trace_name(trace_path, sizeof(trace_path), pid, 0);
	int fd = open_aside(trace_path, tmp, sizeof(tmp));
	int ok = fd >= 0 && fstat(fd, &st) == 0;
	if (ok) {
		as_shm_init(pid, st.st_ino);
		msgpack_sbuffer_clear(&sbuf);
		pack_header();
		ok = write_header(fd) == 0 && link_first_free(fd, tmp, pid) == 0;
		msgpack_sbuffer_clear(&sbuf);
	}
	int saved = errno;
	if (tmp[0])
		unlink(tmp);
	if (!ok) {
		if (fd >= 0) {
			as_shm_done();
			as_sys_close(fd);
		}
		as_warn("asyncshim: cannot create %s: %s; asyncshim disabled", trace_path, strerror(saved));
		return -1;
	}
	trace_dev = st.st_dev;
	trace_ino = st.st_ino;
	trace_fd = keep_high(fd);
	write_failed = 0;
	return 0;
}

static int trace_file_fd(void)
{
	if (same_file(trace_fd))
		return trace_fd;
	int fd = as_sys_open(trace_path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd >= 0 && !same_file(fd)) {
		as_sys_close(fd);
		fd = -1;
	}
	trace_fd = keep_high(fd);
	return trace_fd;
}

/* The packer's write callback: msgpack_sbuffer_write, with the copy of
 * the 1 to 9 bytes most values take done in place instead of by a call to
 * memcpy (a third of the collector's time per event went to the call). */
static int sbuf_write(void *data, const char *buf, size_t len)
{
	msgpack_sbuffer *sb = data;
	if (len > 16 || sb->alloc - sb->size < len)
		return msgpack_sbuffer_write(data, buf, len);
	char *dst = sb->data + sb->size;
	for (size_t i = 0; i < len; i++)
		dst[i] = buf[i];
	sb->size += len;
	return 0;
}

/* Packed records that never reached the file (a full disk, a file
 * that vanished): counted in the end record. */
static uint64_t lost_bytes, lost_records;

static void lose_packed(void)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	while (off < sbuf.size && msgpack_unpack_next(&u, sbuf.data, sbuf.size, &off) == MSGPACK_UNPACK_SUCCESS)
		lost_records++;
	msgpack_unpacked_destroy(&u);
	lost_bytes += sbuf.size;
	msgpack_sbuffer_clear(&sbuf);
}

/* Append LEN bytes of whole records, or nothing: a short write (full disk,
 * a SIGKILL can make one too but then nothing follows) is cut back off, so
 * the file always ends with a whole record and a later append never
 * follows half of one.  Returns 0 when all was written. */
static int append_whole(int fd, const char *data, size_t len)
{
	off_t start = lseek(fd, 0, SEEK_END);
	size_t off = as_sys_write_all(fd, data, len);
	if (off == len)
		return 0;
	int saved = errno;
	if (off && (start < 0 || ftruncate(fd, start) != 0))
		trace_ok = 0;   /* half a record stays: nothing may follow it */
	errno = off ? ENOSPC : saved;
	return -1;
}

/* Append what is packed so far.  After a failed write nothing more is
 * written but the end record (what was lost would leave later records
 * pointing at stacks and threads the file never got). */
static int write_out(void)
{
	if (sbuf.size == 0)
		return 0;
	if (!trace_ok || write_failed) {
		lose_packed();
		return -1;
	}
	int fd = trace_file_fd();
	if (fd < 0) {
		as_warn("asyncshim: trace file %s vanished or was replaced; recording stopped", trace_path);
		trace_ok = 0;
		lose_packed();
		return -1;
	}
	if (append_whole(fd, sbuf.data, sbuf.size) != 0) {
		as_warn("asyncshim: cannot write %s: %s; recording stopped (what is lost is counted at the end)",
			trace_path, strerror(errno));
		write_failed = 1;
		lose_packed();
		return -1;
	}
	msgpack_sbuffer_clear(&sbuf);
	last_write_ns = as_mono_ns();
	return 0;
}

/* The end record after a failed write: alone, whole or not at all. */
static void write_end_after_failure(void)
{
	int fd = trace_ok ? trace_file_fd() : -1;
	if (fd >= 0)
		append_whole(fd, sbuf.data, sbuf.size);
	msgpack_sbuffer_clear(&sbuf);
}

int as_trace_create(void)
{
	msgpack_sbuffer_init(&sbuf);
	msgpack_packer_init(&pk, &sbuf, sbuf_write);
	sink = as_cfg.flight ? &flight_sink : &file_sink;
	return sink->start();
}

static void collect_final(const char *reason);

/* A process killed in the middle of a write leaves half a record at the
 * end of its trace: cut it off before appending, or everything appended
 * would be read as the rest of it. */
static int trim_unfinished(int fd, off_t size, const char *path)
{
	if (size <= 0)
		return 0;
	const char *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		return -1;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0, whole = 0;
	msgpack_unpack_return ret;
	while ((ret = msgpack_unpack_next(&u, map, (size_t)size, &off)) == MSGPACK_UNPACK_SUCCESS)
		whole = off;
	msgpack_unpacked_destroy(&u);
	munmap((void *)map, (size_t)size);
	if (ret != MSGPACK_UNPACK_CONTINUE || whole == (size_t)size)
		return 0;       /* whole, or corrupt: not ours to cut */
	as_warn("asyncshim: %s: cutting off an unfinished last record (%zu bytes)", path,
		(size_t)size - whole);
	return ftruncate(fd, (off_t)whole);
}

static int recover_status = -1;  /* the exit status asyncshim run saw, -1 = none */

/* asyncshim recover (preload/shm.c): append what a killed process's rings
 * hold to its trace, with the end record it never wrote. */
int as_collector_recover(const char *path, const char *reason, int status)
{
	int fd = as_sys_open(path, O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0);   /* read: trim_unfinished */
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		if (fd >= 0)
			as_sys_close(fd);
		return -1;
	}
	if (trim_unfinished(fd, st.st_size, path) != 0) {
		as_sys_close(fd);
		return -1;
	}
	sink = &file_sink;
	snprintf(trace_path, sizeof(trace_path), "%s", path);
	trace_dev = st.st_dev;
	trace_ino = st.st_ino;
	trace_fd = fd;
	trace_ok = 1;
	msgpack_sbuffer_init(&sbuf);
	msgpack_packer_init(&pk, &sbuf, sbuf_write);
	recover_status = status;
	collect_final(reason);
	return trace_ok ? 0 : -1;
}

/* ---- draining ---- */

static void pack_thread(struct as_thread *t, int exited)
{
	char name[32] = "";
	if (exited || as_recovering) {
		memcpy(name, t->name, sizeof(t->name));
		name[sizeof(t->name)] = '\0';
	} else {
		char path[64];
		snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)t->tid);
		ssize_t n = read_file(path, name, sizeof(name) - 1);
		name[n > 0 ? n : 0] = '\0';
		name[strcspn(name, "\n")] = '\0';
		memcpy(t->name, name, sizeof(t->name) - 1);  /* for asyncshim recover */
	}
	msgpack_pack_map(&pk, 6);
	as_pack_type(&pk, AS_T_thread);
	pack_kv_i64(AS_K_tid, t->tid);
	pack_kv_str(AS_K_name, name);
	pack_key(AS_K_loop);
	if (CMM_LOAD_SHARED(t->is_loop))
		msgpack_pack_true(&pk);
	else
		msgpack_pack_false(&pk);
	pack_kv_u64(AS_K_dropped, __atomic_load_n(&t->dropped, __ATOMIC_RELAXED));
	pack_key(AS_K_exited);
	if (exited)
		msgpack_pack_true(&pk);
	else
		msgpack_pack_false(&pk);
}

/* What one drain of a ring holds: most drains of a busy loop hold nothing
 * but iterations, which then take one packing pass instead of five. */
struct census {
	uint64_t iters, others;
	uint64_t first;           /* index of the first iteration */
	uint64_t busy, longest;   /* ticks: the iterations' sum and maximum */
};

static struct census take_census(const struct as_thread *t, uint64_t from, uint64_t to)
{
	struct census c = {0, 0, to, 0, 0};
	for (uint64_t i = from; i < to; i++) {
		const struct as_record *r = &t->ring[i & (t->cap - 1)];
		if (r->kind != AS_REC_ITER) {
			c.others++;
			continue;
		}
		if (!c.iters++)
			c.first = i;
		c.busy += r->dur;
		c.longest = r->dur > c.longest ? r->dur : c.longest;
	}
	return c;
}

/* Pack N iterations of T from ring index FROM on (before TO) as one
 * record; returns the index after the last one packed. */
static uint64_t pack_iter_batch(struct as_thread *t, uint64_t from, uint64_t to, uint64_t n)
{
	while (t->ring[from & (t->cap - 1)].kind != AS_REC_ITER)
		from++;
	msgpack_pack_map(&pk, 4);
	as_pack_type(&pk, AS_T_iters);
	pack_kv_i64(AS_K_tid, t->tid);
	uint64_t t0 = as_ticks_to_ns(t->ring[from & (t->cap - 1)].ts), prev = t0, i = from;
	pack_key(AS_K_d);
	msgpack_pack_array(&pk, (size_t)n * 2);
	for (uint64_t done = 0; i < to && done < n; i++) {
		const struct as_record *r = &t->ring[i & (t->cap - 1)];
		if (r->kind != AS_REC_ITER)
			continue;
		uint64_t start = as_ticks_to_ns(r->ts);
		/* starts only move forward; clamp rounding so deltas stay unsigned */
		msgpack_pack_uint64(&pk, start >= prev ? start - prev : 0);
		msgpack_pack_uint64(&pk, as_dur_to_ns(r->dur));
		prev = start >= prev ? start : prev;
		done++;
	}
	pack_key(AS_K_t0);
	msgpack_pack_uint64(&pk, t0);
	return i;
}

/* What a drain packs goes to the sink on the way, past DRAIN_BYTES: a
 * drain of many full rings would grow the packer's buffer by megabytes. */
static void spill(int drained)
{
	if (sbuf.size >= DRAIN_BYTES)
		sink->spill(drained);
}

/* In records of at most ITERS_PER_RECORD: a drain of a big, full ring
 * would otherwise make one record of megabytes, which flight mode's window
 * must take whole (and split from the rest by unpacking it). */
static void pack_iters(struct as_thread *t, uint64_t to, const struct census *c)
{
	uint64_t i = c->first;
	for (uint64_t left = c->iters; left;) {
		uint64_t n = left < ITERS_PER_RECORD ? left : ITERS_PER_RECORD;
		i = pack_iter_batch(t, i, to, n);
		left -= n;
		spill(0);
	}
}

static void pack_block(struct as_thread *t, const struct as_record *r)
{
	int nested = AS_CALL_IS_NESTED(r->call);
	msgpack_pack_map(&pk, nested ? 12 : 11);
	as_pack_type(&pk, AS_T_block);
	pack_kv_str(AS_K_seen_by, "hook");
	if (nested) {
		pack_key(AS_K_nested);
		msgpack_pack_true(&pk);
	}
	pack_kv_i64(AS_K_tid, t->tid);
	pack_kv_str(AS_K_call, r->call < AS_CALL_COUNT ? as_call_names[r->call] : "?");
	pack_key(AS_K_fd);
	if (r->fd >= 0)
		msgpack_pack_int32(&pk, r->fd);
	else
		msgpack_pack_nil(&pk);
	pack_kv_str(AS_K_fd_kind, r->fd_kind <= AS_FD_OTHER ? as_fd_kind_names[r->fd_kind] : NULL);
	pack_kv_u64(AS_K_t, as_ticks_to_ns(r->ts));
	pack_kv_u64(AS_K_dur, as_dur_to_ns(r->dur));
	pack_kv_u64(AS_K_stack, r->stack);
	as_spans_pack_block_attr(&pk, t);   /* "span", "request" */
}

/* ---- flight mode: triggers (collector/flight.c keeps the window) ---- */

static void flight_keep(void);

#define FLIGHT_AUTO_MAX 16       /* traces one process writes on its own */

static uint64_t flight_due;      /* mono ns when a triggered trace is due, 0 = none */
static const char *flight_trigger;
static uint64_t flight_trigger_ns;
static unsigned flight_auto;

/* A blocking call or stall of DUR_NS at T_NS: write the window around it
 * once flight_after_ms more have been recorded. */
static void flight_note(const char *trigger, uint64_t t_ns, uint64_t dur_ns)
{
	if (!as_cfg.trigger_ms || dur_ns < (uint64_t)as_cfg.trigger_ms * 1000000u ||
	    flight_due || flight_auto >= FLIGHT_AUTO_MAX)
		return;
	flight_trigger = trigger;
	flight_trigger_ns = t_ns;
	flight_due = as_mono_ns() + (uint64_t)as_cfg.flight_after_ms * 1000000u + 1;
	/* what is packed so far (the trigger included) is the lead-up: what
	 * comes after may take only half the window (collector/flight.c) */
	flight_keep();
	as_flight_mark_trigger();
}

/* a wait the watchdog found (collector/offcpu.c) triggers like a hook's */
void as_flight_note_block(uint64_t t_ns, uint64_t dur_ns)
{
	sink->note("block", t_ns, dur_ns);
}

static void note_stall(struct as_thread *t, const struct as_record *r)
{
	uint64_t iter_ns = as_dur_to_ns(r->dur), blocked = t->c_blocked < iter_ns ? t->c_blocked : iter_ns;
	if (iter_ns - blocked >= (uint64_t)as_cfg.stall_ms * 1000000u)
		sink->note("stall", as_ticks_to_ns(r->ts), iter_ns - blocked);
}

static void publish_tail(struct as_thread *t)
{
	cmm_smp_mb();
	CMM_STORE_SHARED(t->tail, t->c_drained);
}

static int drain_final;   /* the last drain: wait for no watchdog finding */

/* Pack ring records [tail, head) of T. */
static void drain_range(struct as_thread *t, uint64_t tail, uint64_t head)
{
	uint64_t block_ns = (uint64_t)as_cfg.block_ms * 1000000u;
	struct census c = take_census(t, tail, head);
	as_overhead_count(t, tail, head, c.others ? NULL : &c.busy);
	if (c.iters)
		pack_iters(t, head, &c);
	/* Only iterations, none a stall (so none with a flight trigger): the
	 * per-record pass below would only reset the stall state after each. */
	if (!c.others && as_dur_to_ns(c.longest) < (uint64_t)as_cfg.stall_ms * 1000000u) {
		if (c.iters) {
			as_stall_reset(t);
			as_offcpu_take(&pk, t, NULL, t->ring[(head - 1) & (t->cap - 1)].ts);
		}
		return;
	}
	as_tasks_drain(&pk, t, tail, head);
	/* iterations are packed in batches above; everything else one by one */
	for (uint64_t i = tail; i < head; i++) {
		const struct as_record *r = &t->ring[i & (t->cap - 1)];
		switch (r->kind) {
		case AS_REC_BLOCK:
			if (as_dur_to_ns(r->dur) >= block_ns) {
				struct as_record rb = *r;   /* stack: the interned id from here on */
				rb.stack = as_stack_of(&pk, t, i);
				pack_block(t, &rb);
				as_gate_note(t->tid, &rb, as_dur_to_ns(r->dur));
				as_stall_block(t, as_dur_to_ns(r->dur));
				sink->note("block", as_ticks_to_ns(r->ts), as_dur_to_ns(r->dur));
			}
			t->c_at_span = t->c_at_request = 0;
			break;
		case AS_REC_SAMPLE:
			as_spans_sample(t, r);
			as_stall_sample(t, r, i);
			break;
		case AS_REC_ITER:
			/* the watchdog's waits first: time the stall does not have */
			as_offcpu_take(&pk, t, r, 0);
			note_stall(t, r);
			as_stall_iter(&pk, t, r);
			break;
		case AS_REC_SPAN_BEGIN:
		case AS_REC_SPAN_END:
		case AS_REC_SPAN_META:
		case AS_REC_SPAN_CUMUL:
		case AS_REC_SPAN_AT:
			as_spans_pack(&pk, t, i);
			break;
		default:
			break;
		}
	}
}

/* Flight mode: the first record in [tail, head) that may trigger a trace
 * (a blocking call or an iteration of trigger_ms or more); head if none.
 * The drain is cut after it, so the iterations that follow it are packed
 * after the trigger, in the half of the window that is theirs
 * (collector/flight.c), not batched with the lead-up. */
static uint64_t flight_cut(const struct as_thread *t, uint64_t tail, uint64_t head)
{
	if (!as_cfg.trigger_ms || flight_due)
		return head;
	uint64_t trigger_ns = (uint64_t)as_cfg.trigger_ms * 1000000u;
	for (uint64_t i = tail; i < head; i++) {
		const struct as_record *r = &t->ring[i & (t->cap - 1)];
		if ((r->kind == AS_REC_BLOCK || r->kind == AS_REC_ITER) && as_dur_to_ns(r->dur) >= trigger_ns)
			return i;
	}
	return head;
}

static void drain_thread(struct as_thread *t)
{
	uint64_t head = CMM_LOAD_SHARED(t->head);
	cmm_smp_rmb();
	/* a drain not yet followed by finish_drain has taken up to c_drained */
	uint64_t tail = t->c_drained > t->tail ? t->c_drained : t->tail;
	head = as_offcpu_limit(t, tail, head, drain_final);   /* the watchdog's findings first */

	if (head > tail || CMM_LOAD_SHARED(t->is_loop))
		recorded = 1;
	if (!t->c_announced) {
		pack_thread(t, 0);
		t->c_announced = 1;
	}
	uint64_t cut = sink->cut(t, tail, head);
	if (cut < head) {
		drain_range(t, tail, cut + 1);
		drain_range(t, cut + 1, head);
	} else {
		drain_range(t, tail, head);
	}
	if (drain_final)        /* waits of the iteration the process ends in */
		as_offcpu_take(&pk, t, NULL, UINT64_MAX);
	t->c_drained = head;
	if (!as_shm_prefix[0])
		publish_tail(t);
}

/* Shared rings: a ring's tail moves only once what was drained from it is
 * in the trace, and the stack count with it (preload/shm.c). */
static void publish_tails(void)
{
	struct as_thread *t;
	rcu_read_lock();
	cds_list_for_each_entry_rcu(t, &as_threads, node)
		publish_tail(t);
	rcu_read_unlock();
	as_shm_sync(as_stacks_count());
}

/* Drain everything into the packer.  With shared rings the tails move only
 * once that is written (here, for a large drain, or finish_drain). */
static void drain_all(int final)
{
	struct as_thread *t;

	drain_final = final || as_recovering;
	if (!as_recovering) {
		clock_refine();
		as_modules_pack_new(&pk);
	}
	rcu_read_lock();
	cds_list_for_each_entry_rcu(t, &as_threads, node) {
		int dead = CMM_LOAD_SHARED(t->dead);
		cmm_smp_rmb();
		drain_thread(t);
		if (dead || final)
			pack_thread(t, dead);
		spill(1);
	}
	rcu_read_unlock();
}

/* After a write: publish the tails (shared rings), then reclaim rings of
 * threads that exited, after a grace period so no reader can still hold
 * them. */
static void finish_drain(void)
{
	struct as_thread *t, *tmp, *reclaim = NULL;

	if (as_shm_prefix[0])
		publish_tails();
	as_registry_lock();
	cds_list_for_each_entry_safe(t, tmp, &as_threads, node) {
		if (CMM_LOAD_SHARED(t->dead) && t->tail == CMM_LOAD_SHARED(t->head)) {
			/* readers may still be on t and follow t->node.next:
			 * the link stays as it is until the grace period ends */
			cds_list_del_rcu(&t->node);
			t->c_reclaim_next = reclaim;
			reclaim = t;
		}
	}
	as_registry_unlock();
	if (reclaim) {
		synchronize_rcu();
		for (t = reclaim; t; t = tmp) {
			tmp = t->c_reclaim_next;
			as_shm_ring_done(t);
			as_thread_free(t);
		}
	}
	as_wraps_reclaim();
}

static void pack_end(const char *reason)
{
	/* threads registered after the process changed its uids (a SIGKILL
	 * would have lost what their rings held), and killed processes whose
	 * rings this one removed from /dev/shm (preload/shm.c): when not 0 */
	unsigned priv = CMM_LOAD_SHARED(as_shm_private_rings), swept = CMM_LOAD_SHARED(as_shm_swept);
	uint64_t ringless = uatomic_read(&as_ringless_threads);
	int status = as_recovering ? recover_status : -1;
	if (!as_recovering)     /* /proc/self is the helper's then */
		as_threads_seen_scan();
	uint64_t nthreads = as_recovering ? 0 : as_threads_seen(collector_tid);
	msgpack_pack_map(&pk, 3 + (priv > 0) + (swept > 0) + (lost_bytes ? 2 : 0) + (ringless ? 2 : 0) +
			 (status >= 0) + (nthreads > 0));
	as_pack_type(&pk, AS_T_end);
	pack_kv_str(AS_K_reason, reason);
	if (status >= 0)
		pack_kv_i64(AS_K_exit_status, status);
	if (nthreads)
		pack_kv_u64(AS_K_threads_seen, nthreads);
	if (priv)
		pack_kv_u64(AS_K_private_rings, priv);
	if (swept)
		pack_kv_u64(AS_K_removed_stale_rings, swept);
	/* recovering: the last moment the dead process's rings show */
	pack_kv_u64(AS_K_duration_ns, as_recovering ? as_ticks_to_ns(as_recover_end) : as_mono_ns() - as_mono0);
	if (lost_bytes) {
		pack_kv_u64(AS_K_lost_bytes, lost_bytes);
		pack_kv_u64(AS_K_lost_records, lost_records);
	}
	if (ringless) {
		pack_kv_u64(AS_K_ringless_threads, ringless);
		pack_kv_u64(AS_K_ringless_events, uatomic_read(&as_ringless_events));
	}
}

/* The end record: after everything else, and written even when a write
 * failed before (alone then, saying what was lost). */
static void write_end(const char *reason)
{
	write_out();
	pack_end(reason);
	if (write_failed)
		write_end_after_failure();
	else
		write_out();
}

/* Flight mode: what was packed goes to the window instead of the file. */
static void flight_keep(void)
{
	as_flight_take(sbuf.data, sbuf.size);
	msgpack_sbuffer_clear(&sbuf);
}

/* The window goes in whole or not at all (see append_whole). */
static void flight_write_window(void)
{
	int fd = trace_file_fd();
	off_t start = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
	if (fd >= 0 && as_flight_write(fd) == 0)
		return;
	as_warn("asyncshim: cannot write %s: %s", trace_path, strerror(errno));
	if (fd < 0 || start < 0 || ftruncate(fd, start) != 0)
		trace_ok = 0;
	write_failed = 1;
	lost_bytes += as_flight_bytes();
}

/* Write the window as a trace file of its own (the next free name), then
 * empty it: an event goes into one trace only.  Caller drained. */
static void flight_dump(const char *trigger, uint64_t trigger_ns, const char *end_reason)
{
	struct as_thread *t;
	flight_keep();
	if (create_file() != 0)
		return;
	trace_ok = 1;
	flight_write_window();
	/* every thread's name and kind: its own record may have left the window */
	rcu_read_lock();
	cds_list_for_each_entry_rcu(t, &as_threads, node)
		pack_thread(t, CMM_LOAD_SHARED(t->dead));
	rcu_read_unlock();
	as_flight_pack_info(&pk, trigger, trigger_ns);
	as_overhead_pack(&pk);
	write_end(end_reason);
	lost_bytes = lost_records = 0;   /* the next flight trace starts afresh */
	if (trace_fd >= 0 && same_file(trace_fd))
		as_sys_close(trace_fd);
	trace_fd = -1;
	trace_ok = 0;
	as_flight_written();
	flight_due = 0;
}

static void pack_ctl(const char *cmd)
{
	recorded = 1;
	msgpack_pack_map(&pk, 3);
	as_pack_type(&pk, AS_T_ctl);
	pack_kv_str(AS_K_cmd, cmd);
	pack_kv_u64(AS_K_t, as_mono_ns() - as_mono0);
}

/* Recording restarts with the next wait of each loop: an iteration that
 * began before (or while) recording was off is not one we measured.  The
 * loop threads drop theirs themselves (hooks/wait.c); the collector resets
 * its own stall bookkeeping. */
static void restart_iterations(void)
{
	struct as_thread *t;
	rcu_read_lock();
	cds_list_for_each_entry_rcu(t, &as_threads, node)
		as_stall_reset(t);
	rcu_read_unlock();
}

/* clear: what the buffers hold is dropped unread (a thread's stall
 * bookkeeping with it). */
static void discard_rings(void)
{
	struct as_thread *t;
	rcu_read_lock();
	cds_list_for_each_entry_rcu(t, &as_threads, node) {
		uint64_t head = CMM_LOAD_SHARED(t->head);
		cmm_smp_mb();
		CMM_STORE_SHARED(t->tail, head);
		t->c_at_span = t->c_at_request = 0;
		as_stall_reset(t);
	}
	rcu_read_unlock();
}

/* Commands from asyncshim ctl and flight_signal (preload/ctl.c), carried
 * out in the order clear, disable/enable, dump. */
static void ctl_apply(unsigned cmds)
{
	uint64_t now = as_mono_ns() - as_mono0;
	as_collector_lock();
	if (!CMM_LOAD_SHARED(as_live)) {
		as_collector_unlock();
		return;
	}
	if (cmds & (1u << AS_CTL_CLEAR)) {
		discard_rings();
		sink->clear();
		pack_ctl("clear");
	}
	drain_all(0);
	if (cmds & (1u << AS_CTL_DISABLE)) {
		CMM_STORE_SHARED(as_active, 0);
		ctl_disabled = 1;
		pack_ctl("disable");
	}
	if (cmds & (1u << AS_CTL_ENABLE)) {
		restart_iterations();
		ctl_disabled = 0;
		pack_ctl("enable");
		CMM_STORE_SHARED(as_active, 1);
	}
	sink->ctl(cmds, now);
	finish_drain();
	as_collector_unlock();
}

static void collect_once(void)
{
	as_collector_lock();
	as_threads_seen_scan();
	drain_all(0);
	sink->flush(as_mono_ns());
	finish_drain();
	as_collector_unlock();
}

/* A process that never ran a loop and recorded nothing (a shell, env,
 * readlink in a wrapper chain) leaves no trace: removed at its end unless
 * keep_empty=1.  Only the file this process made (same inode): never one
 * that replaced it under the name. */
static void remove_if_empty(void)
{
	struct stat st;
	/* threads that got no ring and writes that failed are news too */
	if (recorded || uatomic_read(&as_ringless_threads) || lost_bytes || as_cfg.keep_empty || as_recovering ||
	    !trace_ok)
		return;
	if (lstat(trace_path, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == trace_dev &&
	    st.st_ino == trace_ino && unlink(trace_path) == 0)
		trace_removed = 1;
}

/* ---- the file sink: records go to the trace as they are drained ---- */

static int file_start(void)
{
	if (create_file() != 0)
		return -1;
	trace_ok = 1;
	as_stacks_new_file(&pk);
	return write_out();
}

/* Shared rings: written between threads only, as a ring's tail may move
 * once all that was drained from it is in the trace. */
static void file_spill(int drained)
{
	if (drained && as_shm_prefix[0] && trace_ok && write_out() == 0)
		publish_tails();
}

static void file_note(const char *trigger, uint64_t t_ns, uint64_t dur_ns)
{
	(void)trigger, (void)t_ns, (void)dur_ns;
}

static uint64_t file_cut(const struct as_thread *t, uint64_t tail, uint64_t head)
{
	(void)t, (void)tail;
	return head;
}

static void file_flush(uint64_t now)
{
	if (sbuf.size >= WRITE_BYTES || as_shm_prefix[0] ||
	    (as_cfg.flush_ms && now - last_write_ns >= (uint64_t)as_cfg.flush_ms * 1000000u)) {
		/* shared rings: every drain, so a ring's tail never waits long
		 * for the write that lets it move */
		if (!as_shm_prefix[0] || now - last_overhead_ns >= (uint64_t)as_cfg.flush_ms * 1000000u) {
			as_overhead_pack(&pk);
			last_overhead_ns = now;
		}
		write_out();
	}
}

/* what the rings held is all there was to drop */
static void file_clear(void)
{
}

static void file_ctl(unsigned cmds, uint64_t now)
{
	(void)now;
	if (cmds & (1u << AS_CTL_DUMP))
		pack_ctl("dump");
	as_overhead_pack(&pk);
	write_out();
}

static void file_final(const char *reason)
{
	if (!as_recovering)
		as_overhead_pack(&pk);
	write_end(reason);
	finish_drain();
	as_shm_done();
	remove_if_empty();
}

/* the fd went with the old collector's table: reopen it for the new one */
static void file_resume(void)
{
	trace_file_fd();
}

static const struct sink file_sink = {
	.mode = "normal",
	.start = file_start, .spill = file_spill, .note = file_note,
	.cut = file_cut, .flush = file_flush, .clear = file_clear,
	.ctl = file_ctl, .final = file_final, .resume = file_resume,
};

/* ---- the flight sink: records go to the window, a trace is written from
 * it when triggered (flight_note, ctl dump, flight_signal, exit) ---- */

/* files are made when a trace is triggered */
static int flight_start(void)
{
	as_stacks_new_file(&pk);
	return 0;
}

/* holds what it packs in the window, not in the packer's buffer */
static void flight_spill(int drained)
{
	(void)drained;
	flight_keep();
}

static void flight_flush(uint64_t now)
{
	flight_keep();
	if (flight_due && now >= flight_due) {
		flight_auto++;
		flight_dump(flight_trigger, flight_trigger_ns, "flight");
	}
}

static void flight_clear(void)
{
	flight_keep();
	as_flight_clear();
}

static void flight_ctl(unsigned cmds, uint64_t now)
{
	if (cmds & (1u << AS_CTL_DUMP))
		flight_dump("ctl", now, "flight");
	else if (cmds & (1u << AS_CTL_FLIGHT_SIGNAL))
		flight_dump("signal", now, "flight");
}

static void flight_final(const char *reason)
{
	if (flight_due)         /* still recording after a trigger */
		flight_dump(flight_trigger, flight_trigger_ns, reason);
	else if (as_cfg.flight_exit)
		flight_dump("exit", as_mono_ns() - as_mono0, reason);
	else
		msgpack_sbuffer_clear(&sbuf);
}

/* no file is open between flight traces: nothing to reopen */
static void flight_resume(void)
{
}

static const struct sink flight_sink = {
	.mode = "flight",
	.start = flight_start, .spill = flight_spill, .note = flight_note,
	.cut = flight_cut, .flush = flight_flush, .clear = flight_clear,
	.ctl = flight_ctl, .final = flight_final, .resume = flight_resume,
};

static void collect_final(const char *reason)
{
	as_collector_lock();
	CMM_STORE_SHARED(as_active, 0);
	CMM_STORE_SHARED(as_live, 0);
	as_watchdog_finish();   /* its findings of iterations that just ended */
	drain_all(1);
	sink->final(reason);
	as_collector_unlock();
}

/* Once the main thread may end first (as_main_exited), the process should
 * end when its last thread does; our own threads would keep it alive
 * forever.  /proc/self/stat shows the main thread's state (Z once it
 * ended) and counts it (a zombie) with the shim's threads. */
static int only_shim_threads_left(void)
{
	char buf[1024];
	ssize_t n = read_file("/proc/self/stat", buf, sizeof(buf) - 1);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || p[2] != 'Z')
		return 0;       /* the main thread still runs */
	for (int field = 2; p && field < 20; field++)
		p = strchr(p + 1, ' ');
	return p && atoi(p + 1) <= 1 + CMM_LOAD_SHARED(as_shim_threads);
}

/* Set by the collector once it has a table of its own (1) or cannot (2):
 * as_collector_start waits for it (futex). */
static int table_taken;

static void *collector_main(void *arg)
{
	as_tls.internal = 1;
	uatomic_inc(&as_shim_threads);
	as_collector_lock();
	collector_tid = as_gettid();
	int own = as_fds_private(trace_fd) == 0;
	if (own)
		trace_fd = keep_high(trace_fd);
	as_collector_unlock();
	as_creds_join((int)(intptr_t)arg);
	__atomic_store_n(&table_taken, own ? 1 : 2, __ATOMIC_SEQ_CST);
	as_sys_futex(&table_taken, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
	as_overhead_start();
	as_shm_sweep();
	struct timespec ts = { as_cfg.drain_ms / 1000, (long)(as_cfg.drain_ms % 1000) * 1000000L };
	for (;;) {
		int w = CMM_LOAD_SHARED(wake_word);
		if (CMM_LOAD_SHARED(final_state) == 1)
			break;
		as_sys_futex(&wake_word, FUTEX_WAIT_PRIVATE, w, &ts);
		as_creds_follow();
		if (CMM_LOAD_SHARED(final_state) == 1)
			break;
		unsigned cmds = as_ctl_take_pending();
		if (cmds)
			ctl_apply(cmds);
		collect_once();
		if (CMM_LOAD_SHARED(as_main_exited) && only_shim_threads_left()) {
			const char *none = NULL;
			if (!__atomic_compare_exchange_n(&final_reason, &none, "exit", 0, __ATOMIC_SEQ_CST,
							 __ATOMIC_SEQ_CST))
				break;  /* a final flush was asked for meanwhile */
			collect_final("exit");
			CMM_STORE_SHARED(final_state, 2);
			exit(0);        /* what glibc does when the last thread exits */
		}
	}
	as_creds_leave();
	collect_final(final_reason ? final_reason : "exit");
	CMM_STORE_SHARED(final_state, 2);
	as_sys_futex(&final_state, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
	return NULL;
}

/* Once the collector holds the trace fd in its own table, the program's
 * copy goes (see trace_fd).  Called with no program thread using the
 * number: the constructor, a fork child, a failed exec's resume. */
static void hand_over_trace_fd(int fd)
{
	int state;
	while ((state = __atomic_load_n(&table_taken, __ATOMIC_SEQ_CST)) == 0)
		as_sys_futex(&table_taken, FUTEX_WAIT_PRIVATE, 0, NULL);
	if (state == 1 && fd >= 0 && same_file(fd)) {
		int saved = errno;
		syscall(SYS_close, fd);         /* never the program's close */
		errno = saved;
	}
}

int as_collector_start(void)
{
	sigset_t all, old;
	sigfillset(&all);
	table_taken = 0;
	int fd = trace_fd;      /* the collector may move its own copy */
	/* the collector never takes the program's signals */
	as_sys_sigmask(SIG_SETMASK, &all, &old);
	int seq = as_creds_spawn_begin();
	int r = pthread_create(&collector_thread, NULL, collector_main, (void *)(intptr_t)seq);
	as_creds_spawn_end(r == 0);
	as_sys_sigmask(SIG_SETMASK, &old, NULL);
	collector_running = r == 0;
	if (r == 0)
		hand_over_trace_fd(fd);
	return r == 0 ? 0 : -1;
}

/* Write everything and the end record, exactly once per process.  Called
 * from the destructor at exit and from the SIGTERM/SIGINT handler: the work
 * is done by the collector thread; the caller waits for it (bounded). */
void as_collector_final(const char *reason)
{
	/* the first caller's reason wins, and is published before the state */
	const char *none = NULL;
	if (!__atomic_compare_exchange_n(&final_reason, &none, reason, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		return;
	__atomic_store_n(&final_state, 1, __ATOMIC_SEQ_CST);
	if (!CMM_LOAD_SHARED(as_active) && !collector_running)
		return;
	if (collector_running && !pthread_equal(pthread_self(), collector_thread)) {
		as_collector_wake();
		struct timespec ts = { 0, 100000000L };
		for (int i = 0; i < 50 && CMM_LOAD_SHARED(final_state) != 2; i++)
			as_sys_futex(&final_state, FUTEX_WAIT_PRIVATE, 1, &ts);
		return;
	}
	collect_final(reason);
	CMM_STORE_SHARED(final_state, 2);
}

/* A new trace file in place of one removed as empty. */
static int start_again(void)
{
	trace_removed = 0;
	if (same_file(trace_fd))
		as_sys_close(trace_fd);        /* ours: the unlinked file */
	trace_fd = -1;
	msgpack_sbuffer_destroy(&sbuf);
	if (as_trace_create() == 0)
		return 0;
	trace_ok = 0;
	return -1;
}

/* exec failed after the flush that preceded it: keep recording into the
 * same file (readers take the last end record). */
void as_collector_resume(void)
{
	if (CMM_LOAD_SHARED(final_state) != 2 || !trace_ok)
		return;
	if (collector_running) {
		as_sys_join(collector_thread, NULL);
		uatomic_dec(&as_shim_threads);
	}
	collector_running = 0;
	final_reason = NULL;
	if (trace_removed) {
		if (start_again() != 0)
			return;
	} else {
		sink->resume();
	}
	CMM_STORE_SHARED(final_state, 0);
	CMM_STORE_SHARED(as_live, 1);
	CMM_STORE_SHARED(as_active, !ctl_disabled);
	if (as_collector_start() != 0) {
		CMM_STORE_SHARED(as_active, 0);
		CMM_STORE_SHARED(as_live, 0);
	}
}

/* In a fork child: the parent's rings and file are not ours.  Drop every
 * other thread's ring, reset ours, open our own file, restart collecting. */
void as_collector_after_fork_child(void)
{
	struct as_thread *self = as_tls.t;

	as_shm_after_fork_child();
	as_rings_after_fork_child(self);
	if (self)               /* off the parent's shared ring before touching it */
		self = as_thread_fork_child(self);
	if (self) {
		self->tid = as_gettid();
		self->wpos = self->head = self->tail = self->tail_seen = 0;
		self->nest = 0;
		self->dropped = 0;
		self->iter_start = 0;
		/* not a loop until it waits in one: the parent's loop state
		 * would show every child, even one about to exec, as a loop
		 * thread of 0 iterations, and time its calls as blocking; the
		 * first epoll fd it waits on is its loop's (hooks/wait.c) */
		self->is_loop = 0;
		as_tls.loop = 0;
		as_tls.raw = 0;
		as_tls.family = 0;
		as_tls.loop_fd = 0;
		as_tls.poll_waits = 0;
		self->c_announced = 0;
		self->c_drained = 0;
		self->sample_pending = 0;
		as_stall_reset(self);
	}
	collector_running = 0;
	as_shim_threads = 0;
	as_ringless_threads = as_tls.ringless;   /* the parent's others are not ours */
	as_ringless_events = 0;
	final_reason = NULL;
	final_state = 0;
	wake_word = 0;
	as_flight_reset();
	as_overhead_reset();
	flight_due = 0;
	flight_auto = 0;
	recorded = 0;
	trace_removed = 0;
	as_threads_seen_reset();
	if (!CMM_LOAD_SHARED(as_live))
		return;
	as_mono0 = as_mono_ns();
	if (as_use_tsc)
		as_tsc0 = __rdtsc();
	msgpack_sbuffer_destroy(&sbuf);
	if (same_file(trace_fd))
		as_sys_close(trace_fd);        /* the parent's file, inherited; the number may
					 * be the program's (the collector's own table) */
	trace_fd = -1;
	int ok = as_trace_create() == 0;
	if (self) {             /* into the child's own shared ring */
		cds_list_del(&self->node);
		as_thread_fork_child(self);
	}
	if (!ok || as_collector_start() != 0) {
		CMM_STORE_SHARED(as_active, 0);
		CMM_STORE_SHARED(as_live, 0);
	}
}
