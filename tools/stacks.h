/* stacks.h — the stack model of a trace: interned stacks, the module map,
 * stalls; symbolized on demand (symbolize.c).  Filled record by record from
 * trace.c like the task model.  Report sections in stacks_report.c, the
 * folded export in folded.c; sites.c turns stacks into call sites for
 * check, diff and the HTML report. */
#ifndef ASYNCSHIM_STACKS_H
#define ASYNCSHIM_STACKS_H

#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>

#include "sites.h"
#include "trace.h"

struct stack_model;

struct stall {
	int64_t tid;
	uint64_t t_ns;          /* the iteration's start */
	uint64_t dur_ns;        /* iteration minus its blocking calls: the stalled time */
	uint64_t iter_ns, blocked_ns;
	uint64_t sampled;       /* samples taken; the first ones are in samples[] */
	uint64_t *samples;      /* stack ids */
	uint32_t nsamples;
	uint64_t span, request; /* at its first sample, 0 = none (spans.h) */
	uint64_t seq;           /* record number: the order recorded */
	char cause[12];         /* "cpu", "preempted", "off_cpu", "" = not known */
	int sched;              /* the kernel's figures below are known */
	uint64_t cpu_ns, runq_ns, window_ns;   /* over the part the watchdog watched */
};

/* "running", "waiting for a CPU (preempted)"...: a stall's cause in words */
const char *stall_cause_words(const struct stall *s);

/* Does this record type belong to the stack model? */
int stacks_is_type(const char *type);

/* Load one record (*m is created on first use).  *last_ns gets the latest
 * time the record mentions (0 if none).  Returns 0, or -1 if corrupt. */
int stacks_load(struct stack_model **m, const char *type, const msgpack_object *o, uint64_t *last_ns);

void stacks_free(struct stack_model *m);

/* A "stall" record into *s (samples malloc'd); 0, or -1 if corrupt. */
int stacks_parse_stall(const msgpack_object *o, struct stall *s);

/* The frames of stack ID, innermost first, symbolized on first use; n = 0
 * for id 0 or an id the trace does not hold.  Owned by the model.  *hidden
 * (if not NULL) gets how many leading frames are the shim's own. */
size_t stack_frames(const struct trace *tr, uint64_t id, const struct site_frame **frames,
		    const uint64_t **offsets, size_t *hidden);

/* The stalls of a trace kept one by one (all, or the longest: findings.h),
 * in the order recorded. */
size_t trace_stalls(const struct trace *tr, const struct stall **stalls);

/* The function whose code starts at ADDR (task entry points, callbacks),
 * from the module map; NULL when nothing names it. */
const char *stacks_function_at(const struct trace *tr, uint64_t addr);

/* Report sections (stacks_report.c): `"stalls":[...],"blocking_sites":[...],
 * "stall_sites":[...]` without braces or commas around, and the text form
 * (after the blocking calls).  TOP: sites shown; LIST: stalls listed (the
 * longest). */
void stacks_json_frames(FILE *f, const struct trace *tr, uint64_t id);
void stacks_json(FILE *f, const struct trace *tr, size_t top, size_t list);
void stacks_text(FILE *f, const struct trace *tr, size_t top, size_t list);

#endif
