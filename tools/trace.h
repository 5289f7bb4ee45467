/* trace.h — reading asyncshim traces (msgpack streams) into a summary model.
 *
 * The reader streams the file through msgpack-c's unpacker and keeps only
 * aggregates per thread (lag histograms with exact min/max/count/sum), exact
 * totals and per-site sums of the findings, and the findings themselves one
 * by one up to a bound (findings.h), so memory does not grow with the number
 * of iterations, nor (with trace_load_keep) of blocking calls and stalls. */
#ifndef ASYNCSHIM_TRACE_H
#define ASYNCSHIM_TRACE_H

#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>

#include "hist.h"
#include "../format/trace_format.h"

/* ns as the milliseconds the reports print */
static inline double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

struct thread_info {
	int64_t tid;
	char name[64];
	int loop;
	int exited;
	uint64_t dropped;
	uint64_t iterations;
	uint64_t busy_ns;
	struct hist lag;
};

struct blocking {
	int64_t tid;
	char call[32];
	int fd;                 /* -1 = none */
	char fd_kind[16];       /* "" = none */
	char seen_by[12];       /* "hook", or "watchdog": found waiting in the kernel */
	int nested;             /* a wait of a nested loop (another epoll fd) */
	uint64_t t_ns, dur_ns;
	uint64_t stack;
	uint64_t span, request;  /* ids of the span and request it was made in, 0 = none (spans.h) */
	uint64_t seq;           /* record number: the order recorded */
};

struct trace_src;
struct task_model;
struct stack_model;
struct span_model;
struct findings;

#define TRACE_KEEP_ALL SIZE_MAX

struct trace {
	const char *path;
	struct trace_src *src;      /* the file, open for later passes */
	int own_src;                /* src was opened by trace_load_keep: trace_free closes it */
	int64_t pid, ppid;
	char exe[4096];
	char argv0[256];        /* the name it was run by (a symlink's, say), "" = unknown */
	uint64_t threads_seen;  /* threads the process had (end record), 0 = unknown */
	int64_t exit_status;    /* end reason exit_group: its status, else -1 */
	uint64_t start_unix_ns;
	uint64_t block_ms;
	uint64_t stall_ms;
	uint64_t duration_ns;   /* from the end record, else the last event seen */
	int complete;           /* an end record was seen */
	char end_reason[32];
	uint64_t lost_bytes, lost_records;   /* packed, never written (end record) */
	uint64_t ringless_threads, ringless_events;   /* threads that got no ring */
	struct thread_info *threads;
	size_t nthreads, cap_threads;
	struct blocking *blocks;    /* the longest tr->keep blocking calls, in the order recorded */
	size_t nblocks, cap_blocks;
	size_t keep;                /* blocking calls and stalls kept one by one, TRACE_KEEP_ALL: all */
	uint64_t blocks_total, blocked_ns;  /* every blocking call: count, time */
	uint64_t stalls_total, stalled_ns;  /* every stall */
	struct findings *findings;  /* per-site sums, stalls (findings.h) */
	uint64_t records;
	struct task_model *tasks;   /* tasks and slow callbacks (tasks.h), NULL if none */
	struct stack_model *stacks; /* stacks, modules, stalls (stacks.h), NULL if none */
	struct span_model *spans;   /* spans, requests, overhead, ctl, flight (spans.h), NULL if none */
};

/* Called for every top-level msgpack value; return non-zero to stop with
 * an error (message in err). index 0 is the header. */
typedef int (*trace_visit_fn)(const msgpack_object *obj, uint64_t index, void *ctx, char *err, size_t errlen);

/* A trace file opened once per command: every pass over it (a command
 * needing a second one streams again to stay in bounded memory) reads the
 * same open file, even if renamed or replaced meanwhile, and stops where
 * the first pass, the one that validated it, stopped: a live trace that
 * grows meanwhile yields the same records to every pass. */
struct trace_src {
	const char *path;
	int fd;                 /* -1 until the first pass opens it */
	int validated;          /* a first pass read it to the end without error */
	uint64_t end;           /* bytes of whole records the first pass read */
};

void trace_src_init(struct trace_src *src, const char *path);
void trace_src_close(struct trace_src *src);

/* One pass over SRC, opening it the first time; every value must be a map
 * with a string "type", the first a header.  Returns 0, or -1 with a
 * one-line reason in err. */
int trace_pass(struct trace_src *src, trace_visit_fn fn, void *ctx, char *err, size_t errlen);

/* One pass over PATH (opened and closed here) */
int trace_stream(const char *path, trace_visit_fn fn, void *ctx, char *err, size_t errlen);

/* Load PATH; TR keeps it open for later passes (trace_free closes it). */
int trace_load(const char *path, struct trace *tr, char *err, size_t errlen);
/* The same keeping only the KEEP longest blocking calls and stalls one by
 * one (totals and per-site sums still count every one). */
int trace_load_keep(const char *path, struct trace *tr, size_t keep, char *err, size_t errlen);
/* The same from SRC, which stays the caller's to close. */
int trace_load_src(struct trace_src *src, struct trace *tr, size_t keep, char *err, size_t errlen);
/* No more passes over TR's file: it is closed now, so a command given
 * many traces stays within the fd limit. */
void trace_release(struct trace *tr);
void trace_free(struct trace *tr);

/* Room for one more element in a growable array: returns P (or its
 * reallocation, with *cap doubled) when n < capacity, NULL when out of memory. */
void *trace_grow(void *p, size_t *cap, size_t n, size_t size);

/* msgpack map helpers: the value of KEY (trace_format.h) */
const msgpack_object *mp_get(const msgpack_object *map, enum as_trace_key key);
int mp_str(const msgpack_object *map, enum as_trace_key key, char *out, size_t len);
int mp_u64(const msgpack_object *map, enum as_trace_key key, uint64_t *out);
int mp_i64(const msgpack_object *map, enum as_trace_key key, int64_t *out);

#endif
