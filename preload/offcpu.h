/* offcpu.h — what the watchdog finds about a loop thread that is not
 * running (preload/offcpu.c), handed to the collector (collector/offcpu.c).
 *
 * The watchdog looks at a loop thread inside a long iteration without
 * disturbing it: /proc/self/task/TID/status (state), .../schedstat (run and
 * runqueue time) and, when it sleeps, .../syscall (which syscall, its
 * arguments, sp and pc).  Its findings go through a small queue per thread
 * of which the watchdog is the only writer and the collector the only
 * reader: waits in syscalls no hook timed, and the scheduler's figures of
 * each iteration it watched (the stall's cause). */
#ifndef ASYNCSHIM_OFFCPU_H
#define ASYNCSHIM_OFFCPU_H

#include <stdint.h>

#define AS_OFF_FRAMES 48        /* frames kept per wait */
#define AS_OFF_QUEUE 8          /* findings in flight per thread */

enum { AS_OFF_WAIT = 1, AS_OFF_SCHED };

struct as_off_event {
	uint64_t iter;                  /* ticks: start of the iteration it belongs to */
	uint64_t ts, dur;               /* WAIT: ticks */
	uint64_t run_ns, runq_ns, window_ns;   /* SCHED: over the watched window */
	uint32_t runnable, asleep;      /* SCHED: looks that found it runnable, asleep */
	int32_t kind;
	int32_t nr;                     /* WAIT: the syscall */
	int32_t fd;                     /* WAIT: its first argument when an fd, else -1 */
	uint32_t fd_kind;
	uint32_t npcs;
	uint64_t pcs[AS_OFF_FRAMES];    /* innermost first; frame 0 is the syscall's pc */
};

struct as_offcpu {
	/* watchdog-private */
	uint64_t iter;                  /* the iteration being watched, 0 = none */
	uint64_t prev_look;             /* ticks of the look before this one */
	int have_base, in_wait, hooked;
	uint32_t looks_runnable, looks_asleep;  /* what state the looks found it in */
	uint64_t run0, runq0, mono0, run1, runq1, mono1;
	long nr;
	uint64_t sp, pc, arg0;
	struct as_off_event cur;        /* the wait in progress */
	/* shared */
	uint64_t open;                  /* findings of this iteration are not all queued yet */
	uint64_t head;                  /* written by the watchdog */
	uint64_t tail;                  /* written by the collector */
	struct as_off_event q[AS_OFF_QUEUE];
	/* collector-private */
	uint64_t c_sched_iter, c_run_ns, c_runq_ns, c_window_ns;
	uint32_t c_runnable, c_asleep;
	uint64_t c_hold_iter, c_hold_since;
};

struct as_thread;
/* the watchdog (preload/watchdog.c): one look at T inside iteration START;
 * returns whether T is running and does not block signal SIG */
int as_offcpu_look(struct as_thread *t, uint64_t start, uint64_t now, int sig);
/* ... and T's iteration is over (its iter_start no longer START) */
void as_offcpu_done(struct as_thread *t, uint64_t now);
void as_offcpu_end_wait(struct as_thread *t, uint64_t now);
void as_offcpu_init(void);
void as_offcpu_forget(struct as_thread *t);
/* syscall names (the x86-64 numbers), "syscall_N" for the rest */
const char *as_syscall_name(int nr, char *buf, unsigned size);

#endif
