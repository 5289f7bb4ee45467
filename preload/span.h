/* span.h — spans and requests the program marks itself (include/asyncshim.h,
 * python/asyncshim.py), shared by preload/span.c (the API), the shim's slow
 * paths that attribute findings to spans (as_span_note), and
 * collector/spans.c (which writes the trace records).
 *
 * How the span records use struct as_record (32 bytes, see record.h).
 * Times are ticks; ids are per-process span ids (never 0):
 *
 *   AS_REC_SPAN_BEGIN  ts = begun, dur = span id, call = enum as_span_kind,
 *                      aux/stack = parent span id (low/high 32 bits, 0 = none),
 *                      fd = name length, fd_kind = TEXT records that follow
 *   AS_REC_SPAN_END    ts = ended, dur = span id
 *   AS_REC_SPAN_META   dur = span id, call = 0 integer (ts = the value) or
 *                      1 string, fd = key length, aux = value length,
 *                      fd_kind = TEXT records that follow (key, then value)
 *   AS_REC_SPAN_CUMUL  a cumulative span's aggregate under one parent:
 *                      ts = total ticks, dur = count, aux/stack = parent id,
 *                      fd = name length, fd_kind = TEXT records after the
 *                      MINMAX record that always follows it
 *   AS_REC_SPAN_MINMAX ts = shortest, dur = longest (ticks), aux/stack =
 *                      when the first of them began (ticks, low/high)
 *   AS_REC_SPAN_AT     just before a BLOCK or SAMPLE record of the same
 *                      thread: dur = innermost span id, ts = innermost
 *                      request id (0 = none)
 *   AS_REC_TEXT        call = 1..24 bytes of text in ts, dur, stack, aux
 *
 * Names, keys and string values are copied (at most AS_SPAN_NAME_MAX,
 * AS_SPAN_KEY_MAX, AS_SPAN_VALUE_MAX bytes) when the program calls; the
 * program's memory is never read later. */
#ifndef ASYNCSHIM_SPAN_H
#define ASYNCSHIM_SPAN_H

#include "runtime.h"

#define AS_SPAN_NAME_MAX 63
#define AS_SPAN_KEY_MAX 31
#define AS_SPAN_VALUE_MAX 63
#define AS_TEXT_BYTES 24

enum as_span_kind { AS_SPAN_PLAIN = 0, AS_SPAN_REQUEST = 1 };

static inline uint64_t as_span_rec_parent(const struct as_record *r)
{
	return (uint64_t)r->aux | (uint64_t)r->stack << 32;
}

static inline void as_span_rec_set_parent(struct as_record *r, uint64_t v)
{
	r->aux = (uint32_t)v;
	r->stack = (uint32_t)(v >> 32);
}

/* Slow paths (blocking call, stall sample; async-signal-safe): record the
 * span and request the thread is in now, just before the finding. */
void as_span_note(struct as_thread *t);

/* Constructor: per-thread clean-up.  at exit: the exiting thread's
 * cumulative spans outside any span are written. */
void as_span_init(void);
void as_span_thread_flush(void);

/* On the collector thread: ns one cumulative span (begin and end, through
 * the API table) costs, on a context of its own that records nothing. */
double as_span_cumulative_ns(void);

/* ---- collector side (collector/spans.c) ---- */
struct msgpack_packer;
/* Pack the span record at ring slot I (any AS_REC_SPAN_* kind). */
void as_spans_pack(struct msgpack_packer *pk, struct as_thread *t, uint64_t i);
/* "span" and "request" keys (ids or nil) for a finding: a blocking call
 * (the SPAN_AT before it, consumed) or the stall of t's current sample
 * iteration. */
void as_spans_pack_block_attr(struct msgpack_packer *pk, struct as_thread *t);
void as_spans_pack_stall_attr(struct msgpack_packer *pk, struct as_thread *t, uint64_t iter_start);
/* A SAMPLE record at slot I is seen (before as_stall_sample). */
void as_spans_sample(struct as_thread *t, const struct as_record *r);

#endif
