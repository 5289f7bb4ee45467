/* spans.h — the span model of a trace: spans and requests the program
 * marked (include/asyncshim.h), their metadata and cumulative spans, the
 * span and request of each blocking call and stall; plus what the shim
 * says it cost (`overhead`), runtime control events (`ctl`) and why a
 * flight-recorder trace was written (`flight`).  Filled record by record
 * from trace.c, finished once (the lag each request suffered takes a second
 * pass over the iterations). */
#ifndef ASYNCSHIM_SPANS_H
#define ASYNCSHIM_SPANS_H

#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>

struct trace;
struct span_model;

int spans_is_type(const char *type);

/* Load one record; *last_ns gets the latest time it mentions. */
int spans_load(struct trace *tr, const char *type, const msgpack_object *o, uint64_t *last_ns);

/* A blocking call was just loaded: a request kept in detail lists it. */
struct blocking;
void spans_note_block(struct trace *tr, const struct blocking *b);
/* A finding the report holds (DELTA 1) or no longer holds (-1) keeps the
 * names of the span and request it was made in. */
void spans_hold(struct trace *tr, uint64_t span, uint64_t request, int delta);

/* Once the trace is loaded: the lag of each request (a second pass over
 * the iterations of tr->src, the file already open).  0, or -1 with a reason. */
int spans_finish(struct trace *tr, char *err, size_t errlen);
void spans_free(struct span_model *m);

/* `,"span":...,"request":...` for a blocking call or a stall (ids from its record). */
void spans_json_attr(FILE *f, const struct trace *tr, uint64_t span, uint64_t request);
/* The name of span ID ("" when unknown). */
const char *spans_name(const struct trace *tr, uint64_t id);

/* Report sections: `"spans":[...],"requests":[...],"spans_by_name":[...],
 * "cumulative":[...],"spans_omitted":N,"overhead":{...}|null,"ctl":[...],
 * "flight":{...}|null` (no braces around, no leading comma), and text.
 * BLOCKING writes one blocking call (report.c's json_blocking). */
typedef void (*spans_blocking_fn)(FILE *f, const struct trace *tr, const struct blocking *b);
void spans_json(FILE *f, const struct trace *tr, spans_blocking_fn blocking);
void spans_text(FILE *f, const struct trace *tr);

/* For exports: the spans kept in detail, in the order they began. */
struct span_view {
	uint64_t id, parent;
	int64_t tid;
	const char *name;
	int request, cumulative, unfinished;
	uint64_t t_ns, dur_ns, count;
};
size_t spans_count(const struct trace *tr);
int spans_get(const struct trace *tr, size_t i, struct span_view *v);

#endif
