/* runtime.h — the runtime's internals: what preload/ and collector/ share
 * among themselves.  hooks/ see only preload/shim.h (the hook API), and
 * this header names nothing in collector/ by path: the folders include
 * hooks/ -> preload/ <- collector/, never in a circle
 * (tests/test_runtime_isolation.py). */
#ifndef ASYNCSHIM_RUNTIME_H
#define ASYNCSHIM_RUNTIME_H

#include "shim.h"
#include "sys.h"

struct as_config {
	char out[PATH_MAX];     /* absolute trace path prefix */
	unsigned block_ms;
	unsigned stall_ms;
	unsigned stacks;
	unsigned stack_depth;   /* frames kept per stack (preload/stack.c) */
	unsigned buffer_kb;
	unsigned enabled;
	unsigned flush_ms;
	unsigned drain_ms;      /* how often the collector empties the rings */
	unsigned follow_exec;
	unsigned gate;          /* in-process gate (preload/gate.c) */
	unsigned exitcode;      /* the gate's exit status */
	char suppress[PATH_MAX]; /* the gate's suppression file, "" = none */
	/* flight-recorder mode and runtime control (preload/ctl.c) */
	unsigned flight;        /* mode=flight */
	unsigned flight_mb;     /* events kept in memory */
	unsigned trigger_ms;    /* a blocking call or stall this long writes a trace; 0 = never */
	unsigned flight_after_ms; /* events after the trigger kept in that trace */
	unsigned flight_signal; /* writes a trace; 0 = none */
	unsigned flight_exit;   /* write one at exit too */
	unsigned ctl_signal;    /* asyncshim ctl's signal; 0 = none */
	unsigned record_argv;   /* 1: the header has the whole command line, not just argv[0] */
	unsigned keep_empty;    /* 1: keep the trace of a process that recorded nothing */
	char raw[1024];         /* ASYNCSHIM_OPTIONS as given, for the header */
};
extern struct as_config as_cfg;

extern int as_shim_threads;        /* threads the shim itself runs */
extern uint64_t as_ringless_threads;  /* threads without a ring (as_ringless_events: shim.h) */

/* ---- per-thread buffers (preload/buffer.c) ---- */
void as_buffer_init(void);
void as_registry_lock(void);
void as_registry_unlock(void);
#define AS_THREADS_ALIGN __attribute__((aligned(64)))   /* struct as_thread's */
extern struct cds_list_head as_threads AS_THREADS_ALIGN;
void as_thread_free(struct as_thread *t);
int as_fds_private(int keep);
struct stat;
/* file, pipe (FIFO), socket or other, from an fd's stat (a tty needs more) */
enum as_fd_kind as_fd_kind_of(const struct stat *st);

/* ---- raw syscalls: the runtime's side (preload/raw.c, preload/watchdog.c) ---- */
void as_raw_start(void);
void as_raw_redirect(void *ucontext);
void as_kick(struct as_thread *target);       /* preload/watchdog.c: sends the signal */
int as_kick_signal(void);                       /* that signal, 0 = none */

/* ---- rings that survive SIGKILL (preload/shm.c) ---- */
#define AS_THREAD_SHARED offsetof(struct as_thread, shm_magic)
struct as_shm_proc {
	uint64_t magic;                /* written last */
	uint32_t version, thread_size; /* sizeof(struct as_thread) of the writer */
	pid_t pid;
	uint64_t start_time;           /* /proc/PID/stat field 22: tells a reused pid */
	int use_tsc;
	uint64_t tsc0, mono0;
	double ns_per_tick;
	uint32_t nstacks;              /* stack ids already in the trace */
	struct as_config cfg;
};
extern char as_shm_prefix[128];
extern int as_recovering;
extern uint64_t as_recover_end;        /* ticks: the latest moment the recovered rings show */
void as_shm_init(pid_t pid, ino_t trace_ino);
void as_shm_sync(uint32_t nstacks);
struct as_thread *as_shm_ring(size_t size, pid_t tid);
void as_shm_ring_done(struct as_thread *t);
void as_shm_done(void);
void as_shm_after_fork_child(void);
void as_shm_sweep(void);
uint64_t as_proc_start_time(pid_t pid);
extern unsigned as_shm_private_rings;
extern unsigned as_shm_swept;
int as_recover(const char *prefix, const char *trace);
/* REASON "killed", or "exit_group" with the process's exit STATUS (-1: none) */
int as_collector_recover(const char *trace, const char *reason, int status);
uint32_t as_stacks_count(void);
void as_stacks_continue(uint32_t n);
struct as_thread *as_thread_fork_child(struct as_thread *old);
void as_rings_before_fork(void);
void as_rings_after_fork_child(struct as_thread *keep);

/* ---- collector (collector/collector.c) ---- */
int as_collector_start(void);
int as_trace_create(void);
void as_collector_after_fork_child(void);
void as_collector_lock(void);
void as_collector_unlock(void);
uint64_t as_ticks_to_ns(uint64_t ticks);
extern uint64_t as_tsc0, as_mono0;
extern double as_ns_per_tick;
/* A duration in ticks as ns (as_ticks_to_ns is for points in time).
 * Inline: the collector converts every record's. */
static inline uint64_t as_dur_to_ns(uint64_t ticks)
{
	return as_use_tsc ? (uint64_t)((double)ticks * as_ns_per_tick + 0.5) : ticks;
}

/* ---- in-process gate (preload/gate.c) ---- */
int as_gate_init(char *err, size_t errlen);
void as_gate_note(pid_t tid, const struct as_record *r, uint64_t dur_ns);
void as_gate_note_wait(pid_t tid, const char *call, int fd, int fd_kind, uint32_t stack, uint64_t dur_ns);
void as_flight_note_block(uint64_t t_ns, uint64_t dur_ns);   /* collector/collector.c */
void as_gate_at_exit(void);
void as_gate_after_fork_child(void);

/* ---- stacks and stall sampling (preload/stack.c, preload/watchdog.c,
 * collector/stacks.c, collector/modules.c) ---- */
#define AS_STACK_MAX 256                /* stack_depth limit */
void as_stack_init(void);
struct as_record *as_reserve_stack(struct as_thread *t, void *ucontext);
void as_own_stack_map(void);
void as_own_stack_unmap(void);
void as_on_own_stack(void (*fn)(void *), void *arg);
void as_watchdog_start(void);
void as_watchdog_after_fork_child(void);
void as_watchdog_finish(void);
extern pid_t as_wd_tid;                 /* the watchdog thread's tid, 0 = none yet */
/* the program's threads, loop or not (collector/threads_seen.c) */
void as_threads_seen_scan(void);
uint64_t as_threads_seen(pid_t collector_tid);
void as_threads_seen_reset(void);
/* The code addresses of stack ID, innermost first: frame 0 exact, the others
 * return addresses.  For the in-process gate (preload/gate.c), at exit. */
size_t as_stack_ips(uint32_t id, uint64_t *ips, size_t max);

/* ---- init.c ---- */
void as_set_block_threshold(void);
void as_signal_own(int sig, void *handler);
void *as_term_handler_addr(void);

int as_stderr_is_start(void);

/* ---- the shim's threads follow per-thread credentials (preload/creds.c) ---- */
int as_creds_spawn_begin(void);
void as_creds_spawn_end(int created);
void as_creds_join(int seq);
void as_creds_leave(void);
int as_creds_pending(void);
void as_creds_follow(void);
void as_creds_after_fork_child(void);
int as_parse_options(const char *s, struct as_config *cfg, char *err, size_t errlen);

#endif
