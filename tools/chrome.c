/* chrome.c — `export --format chrome`: Chrome trace-event JSON.
 *
 * Perfetto UI and chrome://tracing open it.  Every trace is one process with
 * its real OS pid; every thread one track with its real tid.  Loop
 * iterations, blocking calls and stalls are complete ("X") slices; the
 * iteration lag is also a counter track per loop thread.  Times are µs
 * since the earliest process start among the traces given, so processes
 * of one run line up.
 *
 * Each trace is read twice with trace_stream: the first pass validates it
 * and collects what events refer to (thread names, loop flags), the second
 * writes events as it reads them.  So memory is bounded by threads, not
 * events, and a corrupt trace is refused before anything is written. */
#include "export.h"
#include "json.h"
#include "trace.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct ch_thread {
	int64_t tid;
	char name[64];
	int loop;
	uint64_t iterations;    /* numbered while writing */
};

struct ch_trace {
	const char *path;
	int64_t pid;
	char exe[4096];
	char end_reason[32];
	uint64_t start_unix_ns;
	uint64_t records;       /* seen in pass 1; a live trace may grow after */
	uint64_t offset_ns;     /* this trace's time 0 after the earliest start */
	struct ch_thread *threads;
	size_t nthreads, cap;
};

struct ch_writer {
	FILE *out;
	struct ch_trace *tr;
	uint64_t events;
	int stopped;            /* reached the records pass 1 saw */
};

/* ---- pass 1: index and validate ---- */

static struct ch_thread *ch_thread(struct ch_trace *tr, int64_t tid)
{
	for (size_t i = tr->nthreads; i-- > 0;)
		if (tr->threads[i].tid == tid)
			return &tr->threads[i];
	if (tr->nthreads == tr->cap) {
		size_t cap = tr->cap ? tr->cap * 2 : 16;
		struct ch_thread *p = realloc(tr->threads, cap * sizeof(*p));
		if (!p)
			return NULL;
		tr->threads = p;
		tr->cap = cap;
	}
	struct ch_thread *t = &tr->threads[tr->nthreads++];
	memset(t, 0, sizeof(*t));
	t->tid = tid;
	return t;
}

static int iters_ok(const msgpack_object *o, int64_t *tid, uint64_t *t0, const msgpack_object **d)
{
	*d = mp_get(o, "d");
	if (mp_i64(o, "tid", tid) != 0 || mp_u64(o, "t0", t0) != 0 || !*d ||
	    (*d)->type != MSGPACK_OBJECT_ARRAY || (*d)->via.array.size % 2)
		return 0;
	for (uint32_t i = 0; i < (*d)->via.array.size; i++)
		if ((*d)->via.array.ptr[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			return 0;
	return 1;
}

static int block_ok(const msgpack_object *o, int64_t *tid, uint64_t *t, uint64_t *dur)
{
	const msgpack_object *call = mp_get(o, "call");
	return mp_i64(o, "tid", tid) == 0 && call && call->type == MSGPACK_OBJECT_STR &&
	       mp_u64(o, "t", t) == 0 && mp_u64(o, "dur", dur) == 0;
}

static int index_visit(const msgpack_object *o, uint64_t index, void *ctx, char *err, size_t errlen)
{
	struct ch_trace *tr = ctx;
	char type[32] = "";
	int64_t tid;
	uint64_t t, dur;
	const msgpack_object *d;
	int ok = 1;
	mp_str(o, "type", type, sizeof(type));
	tr->records = index + 1;
	if (index == 0) {
		mp_i64(o, "pid", &tr->pid);
		mp_str(o, "exe", tr->exe, sizeof(tr->exe));
		mp_u64(o, "start_unix_ns", &tr->start_unix_ns);
	} else if (!strcmp(type, "thread")) {
		struct ch_thread *th;
		ok = mp_i64(o, "tid", &tid) == 0 && (th = ch_thread(tr, tid));
		if (ok) {
			mp_str(o, "name", th->name, sizeof(th->name));
			const msgpack_object *loop = mp_get(o, "loop");
			if (loop && loop->type == MSGPACK_OBJECT_BOOLEAN && loop->via.boolean)
				th->loop = 1;
		}
	} else if (!strcmp(type, "iters")) {
		struct ch_thread *th;
		ok = iters_ok(o, &tid, &t, &d) && (th = ch_thread(tr, tid));
		if (ok)
			th->loop = 1;
	} else if (!strcmp(type, "block")) {
		ok = block_ok(o, &tid, &t, &dur) && ch_thread(tr, tid);
	} else if (!strcmp(type, "end")) {
		mp_str(o, "reason", tr->end_reason, sizeof(tr->end_reason));
	}
	/* other types: newer records, skipped */
	if (!ok)
		snprintf(err, errlen, "corrupt '%s' record #%llu", type, (unsigned long long)index);
	return ok ? 0 : -1;
}

/* ---- pass 2: events ---- */

static void ch_ts(FILE *f, const char *key, uint64_t ns)
{
	fprintf(f, ",\"%s\":%" PRIu64 ".%03u", key, ns / 1000, (unsigned)(ns % 1000));
}

/* opens an event object; the caller adds fields and closes it */
static void ch_begin(struct ch_writer *w, const char *ph, const char *name, const char *cat, int64_t tid)
{
	FILE *f = w->out;
	fputs(w->events++ ? ",\n{\"ph\":\"" : "\n{\"ph\":\"", f);
	fputs(ph, f);
	fputs("\",\"name\":", f);
	json_str(f, name);
	if (cat) {
		fputs(",\"cat\":", f);
		json_str(f, cat);
	}
	fprintf(f, ",\"pid\":%" PRId64 ",\"tid\":%" PRId64, w->tr->pid, tid);
}

static void emit_iters(struct ch_writer *w, const msgpack_object *o)
{
	int64_t tid;
	uint64_t start;
	const msgpack_object *d;
	iters_ok(o, &tid, &start, &d);
	struct ch_thread *th = ch_thread(w->tr, tid);   /* indexed in pass 1 */
	char counter[48];
	snprintf(counter, sizeof(counter), "lag tid %" PRId64, tid);
	for (uint32_t i = 0; i < d->via.array.size; i += 2) {
		uint64_t dur = d->via.array.ptr[i + 1].via.u64;
		uint64_t t = w->tr->offset_ns + (start += d->via.array.ptr[i].via.u64);
		ch_begin(w, "X", "iteration", "loop", tid);
		ch_ts(w->out, "ts", t);
		ch_ts(w->out, "dur", dur);
		fprintf(w->out, ",\"args\":{\"iteration\":%" PRIu64 ",\"lag_ms\":", th ? th->iterations++ : 0);
		json_ms(w->out, dur);
		fputs("}}", w->out);
		/* the lag of the iteration that starts here, held until the next one */
		ch_begin(w, "C", counter, "loop", tid);
		ch_ts(w->out, "ts", t);
		fputs(",\"args\":{\"lag_ms\":", w->out);
		json_ms(w->out, dur);
		fputs("}}", w->out);
	}
}

static void emit_fd_args(FILE *f, const msgpack_object *o)
{
	int64_t fd;
	char kind[16];
	if (mp_i64(o, "fd", &fd) == 0)
		fprintf(f, "\"fd\":%" PRId64, fd);
	else
		fputs("\"fd\":null", f);
	fputs(",\"fd_kind\":", f);
	json_str(f, mp_str(o, "fd_kind", kind, sizeof(kind)) == 0 ? kind : NULL);
}

static void emit_block(struct ch_writer *w, const msgpack_object *o)
{
	int64_t tid;
	uint64_t t, dur, stack = 0;
	char call[32];
	block_ok(o, &tid, &t, &dur);
	mp_str(o, "call", call, sizeof(call));
	mp_u64(o, "stack", &stack);
	ch_begin(w, "X", call, "blocking", tid);
	ch_ts(w->out, "ts", w->tr->offset_ns + t);
	ch_ts(w->out, "dur", dur);
	fputs(",\"args\":{", w->out);
	emit_fd_args(w->out, o);
	fputs(",\"duration_ms\":", w->out);
	json_ms(w->out, dur);
	fprintf(w->out, ",\"stack_id\":%" PRIu64 "}}", stack);
}

static int emit_visit(const msgpack_object *o, uint64_t index, void *ctx, char *err, size_t errlen)
{
	struct ch_writer *w = ctx;
	char type[32] = "";
	mp_str(o, "type", type, sizeof(type));
	if (index > 0 && !strcmp(type, "iters"))
		emit_iters(w, o);
	else if (index > 0 && !strcmp(type, "block"))
		emit_block(w, o);
	if (index + 1 >= w->tr->records) {
		/* a live trace may have grown since pass 1, maybe half written */
		w->stopped = 1;
		snprintf(err, errlen, "stopped");
		return -1;
	}
	return 0;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* Names after events: thread records may follow the events they name, and
 * the trace-event format allows metadata anywhere. */
static void emit_metadata(struct ch_writer *w)
{
	struct ch_trace *tr = w->tr;
	char name[4200];
	snprintf(name, sizeof(name), "%s", tr->exe[0] ? base_name(tr->exe) : "process");
	ch_begin(w, "M", "process_name", NULL, tr->pid);
	fputs(",\"args\":{\"name\":", w->out);
	json_str(w->out, name);
	fputs("}}", w->out);
	snprintf(name, sizeof(name), "%s%s%s", tr->exe, tr->end_reason[0] ? ", end: " : ", no end record",
		 tr->end_reason);
	ch_begin(w, "M", "process_labels", NULL, tr->pid);
	fputs(",\"args\":{\"labels\":", w->out);
	json_str(w->out, name);
	fputs("}}", w->out);
	for (size_t i = 0; i < tr->nthreads; i++) {
		const struct ch_thread *th = &tr->threads[i];
		snprintf(name, sizeof(name), "%s%s", th->name[0] ? th->name : "thread", th->loop ? " (loop)" : "");
		ch_begin(w, "M", "thread_name", NULL, th->tid);
		fputs(",\"args\":{\"name\":", w->out);
		json_str(w->out, name);
		fputs("}}", w->out);
		/* loop threads first, in the order they were seen */
		ch_begin(w, "M", "thread_sort_index", NULL, th->tid);
		fprintf(w->out, ",\"args\":{\"sort_index\":%zu}}", th->loop ? i : tr->nthreads + i);
	}
}

static void ch_free(struct ch_trace *trs, int n)
{
	for (int i = 0; i < n; i++)
		free(trs[i].threads);
	free(trs);
}

static int fail(char *err, size_t errlen, const char *path, const char *why)
{
	char copy[256];
	snprintf(copy, sizeof(copy), "%s", why);
	snprintf(err, errlen, "%s: %s", path, copy);
	return -1;
}

int export_chrome(FILE *out, char **paths, int npaths, char *err, size_t errlen)
{
	struct ch_trace *trs = calloc((size_t)npaths, sizeof(*trs));
	char why[256];
	if (!trs)
		return fail(err, errlen, paths[0], "out of memory");
	uint64_t origin = UINT64_MAX;
	for (int i = 0; i < npaths; i++) {
		trs[i].path = paths[i];
		if (trace_stream(paths[i], index_visit, &trs[i], why, sizeof(why)) != 0) {
			ch_free(trs, npaths);
			return fail(err, errlen, paths[i], why);
		}
		if (trs[i].start_unix_ns < origin)
			origin = trs[i].start_unix_ns;
	}
	struct ch_writer w = { .out = out };
	fputs("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[", out);
	for (int i = 0; i < npaths; i++) {
		w.tr = &trs[i];
		trs[i].offset_ns = trs[i].start_unix_ns - origin;
		w.stopped = 0;
		if (trace_stream(paths[i], emit_visit, &w, why, sizeof(why)) != 0 && !w.stopped) {
			ch_free(trs, npaths);
			return fail(err, errlen, paths[i], why);
		}
		emit_metadata(&w);
	}
	fputs("\n],\"otherData\":{\"generator\":\"asyncshim export --format chrome\",\"origin_unix_ns\":", out);
	fprintf(out, "%" PRIu64 ",\"traces\":[", origin);
	for (int i = 0; i < npaths; i++) {
		if (i)
			fputc(',', out);
		json_str(out, paths[i]);
	}
	fputs("]}}\n", out);
	ch_free(trs, npaths);
	return 0;
}
