/* chrome.c — `export --format chrome`: Chrome trace-event JSON.
 *
 * Perfetto UI and chrome://tracing open it.  Every trace is one process with
 * its real OS pid; every thread one track with its real tid.  Loop
 * iterations, blocking calls and stalls are complete ("X") slices; the
 * iteration lag is also a counter track per loop thread.  Times are µs
 * since the earliest process start among the traces given, so processes
 * of one run line up.
 *
 * Tasks are async events (begin at creation, end when they complete, are
 * cancelled or fail) named by their entry function, with the parent task's
 * id in args; each run of a task is a slice on the thread it ran on; slow
 * loop callbacks are slices named by their function.  The shim's estimate of
 * its own cost is a counter of the process.  Spans and requests the program
 * marked are nestable async slices, one track per tree (id = its root span),
 * written when they end; cumulative spans are one slice each, "name xN".
 *
 * Stacks go into args symbolized ("function file:line (module)", innermost
 * first, the shim's own frames left out) by the stack model of stacks.h.
 *
 * Each trace is opened once and passed over twice (trace_pass): the first
 * pass validates it and collects what events refer to (thread names, loop
 * flags, function names, each task's function, stacks and modules), the
 * second writes events as it reads them, and stops where the first stopped
 * (a live trace may have grown since, maybe half written).  So memory is bounded by threads, tasks,
 * functions and distinct stacks, not by events, and a corrupt trace is
 * refused before anything is written. */
#include "export.h"
#include "json.h"
#include "sites.h"
#include "stacks.h"
#include "trace.h"

#include <inttypes.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>

struct ch_thread {
	int64_t tid;
	char name[64];
	int loop;
	uint64_t iterations;    /* numbered while writing */
};

struct ch_func {
	uint64_t addr, seq;     /* sorted by address after pass 1, then file order */
	char *name;             /* from the record, else from the module map, else "module+0xoffset" */
	int looked_up;
};

struct ch_task {
	uint64_t id, fn;
};

struct ch_trace {
	const char *path;
	int64_t pid;
	char exe[4096];
	char end_reason[32];
	uint64_t start_unix_ns;
	uint64_t offset_ns;     /* this trace's time 0 after the earliest start */
	struct ch_thread *threads;
	size_t nthreads, cap;
	struct ch_func *funcs;
	size_t nfuncs, cap_funcs;
	struct ch_task *tasks;  /* sorted by id after pass 1 */
	size_t ntasks, cap_tasks;
	struct trace *model;    /* only its stack model: stacks and modules */
	int oom;
};

struct ch_writer {
	FILE *out;
	struct ch_trace *tr;
	uint64_t events;
	void *spans;            /* tsearch: struct ch_span open in pass 2, by id */
};

struct ch_span {
	uint64_t id, root, parent, t;
	int64_t tid;
	int request;
	char name[72];
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

static int add_func(struct ch_trace *tr, const msgpack_object *o)
{
	uint64_t addr, offset = 0;
	char name[512] = "", module[256] = "";
	if (mp_u64(o, AS_K_addr, &addr) != 0)
		return -1;
	struct ch_func *p = trace_grow(tr->funcs, &tr->cap_funcs, tr->nfuncs, sizeof(*p));
	if (!p)
		return tr->oom = -1;
	tr->funcs = p;
	int named = mp_str(o, AS_K_name, name, sizeof(name)) == 0 && name[0];
	if (!named) {
		const char *base;
		mp_str(o, AS_K_module, module, sizeof(module));
		mp_u64(o, AS_K_offset, &offset);
		base = strrchr(module, '/');
		snprintf(name, sizeof(name), "%s+0x%" PRIx64, base ? base + 1 : module[0] ? module : "?", offset);
	}
	p[tr->nfuncs].addr = addr;
	p[tr->nfuncs].seq = tr->nfuncs;
	p[tr->nfuncs].looked_up = named;
	if (!(p[tr->nfuncs].name = strdup(name)))
		return tr->oom = -1;
	tr->nfuncs++;
	return 0;
}

static int add_task(struct ch_trace *tr, const msgpack_object *o)
{
	uint64_t id, fn, t;
	if (mp_u64(o, AS_K_id, &id) != 0 || mp_u64(o, AS_K_fn, &fn) != 0 || mp_u64(o, AS_K_t, &t) != 0)
		return -1;
	struct ch_task *p = trace_grow(tr->tasks, &tr->cap_tasks, tr->ntasks, sizeof(*p));
	if (!p)
		return tr->oom = -1;
	tr->tasks = p;
	p[tr->ntasks].id = id;
	p[tr->ntasks++].fn = fn;
	return 0;
}

static int cmp_task(const void *a, const void *b)
{
	uint64_t x = ((const struct ch_task *)a)->id, y = ((const struct ch_task *)b)->id;
	return x < y ? -1 : x > y;
}

static int cmp_func(const void *a, const void *b)
{
	const struct ch_func *x = a, *y = b;
	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* function name: the first func record for an address wins, as in tasks.c;
 * one the shim could not name is looked up in the module map once */
static const char *func_name(const struct ch_trace *tr, uint64_t addr, char *buf, size_t len)
{
	size_t lo = 0, hi = tr->nfuncs;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (tr->funcs[mid].addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	struct ch_func *f = lo < tr->nfuncs && tr->funcs[lo].addr == addr ? &tr->funcs[lo] : NULL;
	if (f && !f->looked_up) {
		const char *sym = tr->model ? stacks_function_at(tr->model, addr) : NULL;
		char *copy = sym ? strdup(sym) : NULL;
		f->looked_up = 1;
		if (copy) {
			free(f->name);
			f->name = copy;
		}
	}
	if (f)
		return f->name;
	snprintf(buf, len, "0x%" PRIx64, addr);
	return buf;
}

static const char *task_name(const struct ch_trace *tr, uint64_t id, char *buf, size_t len)
{
	struct ch_task key = { .id = id };
	const struct ch_task *t = tr->ntasks ? bsearch(&key, tr->tasks, tr->ntasks, sizeof(key), cmp_task) : NULL;
	if (!t) {
		snprintf(buf, len, "task %" PRIu64, id);
		return buf;
	}
	return func_name(tr, t->fn, buf, len);
}

static int all_uints(const msgpack_object *a, uint32_t group)
{
	if (!a || a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size % group)
		return 0;
	for (uint32_t i = 0; i < a->via.array.size; i++)
		if (a->via.array.ptr[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			return 0;
	return 1;
}

/* the fields the events need, as the report's model checks them */
static int task_record_ok(const char *type, const msgpack_object *o)
{
	uint64_t u;
	int64_t tid;
	char str[32];
	if (mp_i64(o, AS_K_tid, &tid) != 0)
		return 0;
	if (!strcmp(type, AS_TYPE(task)))
		return mp_u64(o, AS_K_id, &u) == 0 && mp_u64(o, AS_K_fn, &u) == 0 && mp_u64(o, AS_K_t, &u) == 0;
	if (!strcmp(type, AS_TYPE(task_runs)))
		return mp_u64(o, AS_K_t0, &u) == 0 && all_uints(mp_get(o, AS_K_d), 4);
	if (!strcmp(type, AS_TYPE(task_end)))
		return mp_u64(o, AS_K_id, &u) == 0 && mp_u64(o, AS_K_t, &u) == 0 && mp_str(o, AS_K_status, str, sizeof(str)) == 0;
	if (!strcmp(type, AS_TYPE(callback)))
		return mp_u64(o, AS_K_fn, &u) == 0 && mp_u64(o, AS_K_t, &u) == 0 && mp_u64(o, AS_K_dur, &u) == 0;
	if (!strcmp(type, AS_TYPE(stall)))
		return mp_u64(o, AS_K_t, &u) == 0 && mp_u64(o, AS_K_dur, &u) == 0;
	return 1;
}

static int iters_ok(const msgpack_object *o, int64_t *tid, uint64_t *t0, const msgpack_object **d)
{
	*d = mp_get(o, AS_K_d);
	if (mp_i64(o, AS_K_tid, tid) != 0 || mp_u64(o, AS_K_t0, t0) != 0 || !*d ||
	    (*d)->type != MSGPACK_OBJECT_ARRAY || (*d)->via.array.size % 2)
		return 0;
	for (uint32_t i = 0; i < (*d)->via.array.size; i++)
		if ((*d)->via.array.ptr[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			return 0;
	return 1;
}

static int block_ok(const msgpack_object *o, int64_t *tid, uint64_t *t, uint64_t *dur)
{
	const msgpack_object *call = mp_get(o, AS_K_call);
	return mp_i64(o, AS_K_tid, tid) == 0 && call && call->type == MSGPACK_OBJECT_STR &&
	       mp_u64(o, AS_K_t, t) == 0 && mp_u64(o, AS_K_dur, dur) == 0;
}

static int index_thread(struct ch_trace *tr, const msgpack_object *o)
{
	int64_t tid;
	struct ch_thread *th;
	if (mp_i64(o, AS_K_tid, &tid) != 0 || !(th = ch_thread(tr, tid)))
		return 0;
	mp_str(o, AS_K_name, th->name, sizeof(th->name));
	const msgpack_object *loop = mp_get(o, AS_K_loop);
	if (loop && loop->type == MSGPACK_OBJECT_BOOLEAN && loop->via.boolean)
		th->loop = 1;
	return 1;
}

/* records of the stack and task models: what pass 2 needs to name things */
static int index_model(struct ch_trace *tr, const char *type, const msgpack_object *o)
{
	int64_t tid;
	uint64_t last;
	if (!strcmp(type, AS_TYPE(stack)) || !strcmp(type, AS_TYPE(module)))
		return (tr->model || (tr->model = calloc(1, sizeof(*tr->model)))) &&
		       stacks_load(&tr->model->stacks, type, o, &last) == 0;
	if (!strcmp(type, AS_TYPE(func)))
		return add_func(tr, o) == 0;
	if (!task_record_ok(type, o) || mp_i64(o, AS_K_tid, &tid) != 0 || !ch_thread(tr, tid))
		return 0;
	return strcmp(type, AS_TYPE(task)) != 0 || add_task(tr, o) == 0;
}

static int is_model_type(const char *type)
{
	switch (as_trace_type_of(type, strlen(type))) {
	case AS_T_stack: case AS_T_module: case AS_T_func: case AS_T_task: case AS_T_task_runs:
	case AS_T_task_end: case AS_T_callback: case AS_T_stall:
		return 1;
	default:
		return 0;
	}
}

static int index_visit(const msgpack_object *o, uint64_t index, void *ctx, char *err, size_t errlen)
{
	struct ch_trace *tr = ctx;
	char type[32] = "";
	int64_t tid;
	uint64_t t, dur;
	const msgpack_object *d;
	struct ch_thread *th;
	int ok = 1;
	mp_str(o, AS_K_type, type, sizeof(type));
	if (index == 0) {
		mp_i64(o, AS_K_pid, &tr->pid);
		mp_str(o, AS_K_exe, tr->exe, sizeof(tr->exe));
		mp_u64(o, AS_K_start_unix_ns, &tr->start_unix_ns);
	} else if (!strcmp(type, AS_TYPE(thread))) {
		ok = index_thread(tr, o);
	} else if (!strcmp(type, AS_TYPE(iters))) {
		if ((ok = iters_ok(o, &tid, &t, &d) && (th = ch_thread(tr, tid))))
			th->loop = 1;
	} else if (!strcmp(type, AS_TYPE(block))) {
		ok = block_ok(o, &tid, &t, &dur) && ch_thread(tr, tid);
	} else if (!strcmp(type, AS_TYPE(end))) {
		mp_str(o, AS_K_reason, tr->end_reason, sizeof(tr->end_reason));
	} else if (is_model_type(type)) {
		ok = index_model(tr, type, o);
	}
	/* other types: newer records, skipped */
	if (tr->oom)
		snprintf(err, errlen, "out of memory");
	else if (!ok)
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
	if (mp_i64(o, AS_K_fd, &fd) == 0)
		fprintf(f, "\"fd\":%" PRId64, fd);
	else
		fputs("\"fd\":null", f);
	fputs(",\"fd_kind\":", f);
	json_str(f, mp_str(o, AS_K_fd_kind, kind, sizeof(kind)) == 0 ? kind : NULL);
}

/* "stack":["function file:line (module)", ...] */
static void emit_stack(struct ch_writer *w, uint64_t id)
{
	const struct site_frame *frames;
	size_t hidden = 0, n = 0;
	if (id && w->tr->model)
		n = stack_frames(w->tr->model, id, &frames, NULL, &hidden);
	fputs(",\"stack\":[", w->out);
	for (size_t i = hidden; i < n; i++) {
		char text[1024];
		site_frame_text(&frames[i], text, sizeof(text));
		if (i > hidden)
			fputc(',', w->out);
		json_str(w->out, text);
	}
	fputc(']', w->out);
}

static void emit_block(struct ch_writer *w, const msgpack_object *o)
{
	int64_t tid;
	uint64_t t, dur, stack = 0;
	char call[32];
	block_ok(o, &tid, &t, &dur);
	mp_str(o, AS_K_call, call, sizeof(call));
	mp_u64(o, AS_K_stack, &stack);
	ch_begin(w, "X", call, "blocking", tid);
	ch_ts(w->out, "ts", w->tr->offset_ns + t);
	ch_ts(w->out, "dur", dur);
	fputs(",\"args\":{", w->out);
	emit_fd_args(w->out, o);
	fputs(",\"duration_ms\":", w->out);
	json_ms(w->out, dur);
	fprintf(w->out, ",\"stack_id\":%" PRIu64, stack);
	emit_stack(w, stack);
	fputs("}}", w->out);
}

static void emit_task(struct ch_writer *w, const msgpack_object *o, int begin)
{
	int64_t tid;
	uint64_t id, t, parent;
	char buf[64], kind[16] = "", status[16] = "";
	mp_i64(o, AS_K_tid, &tid);
	mp_u64(o, AS_K_id, &id);
	mp_u64(o, AS_K_t, &t);
	ch_begin(w, begin ? "b" : "e", task_name(w->tr, id, buf, sizeof(buf)), "task", tid);
	fprintf(w->out, ",\"id\":\"0x%" PRIx64 "\"", id);
	ch_ts(w->out, "ts", w->tr->offset_ns + t);
	fprintf(w->out, ",\"args\":{\"task\":%" PRIu64, id);
	if (begin) {
		mp_str(o, AS_K_kind, kind, sizeof(kind));
		if (mp_u64(o, AS_K_parent, &parent) == 0)
			fprintf(w->out, ",\"parent\":%" PRIu64, parent);
		else
			fputs(",\"parent\":null", w->out);
		fputs(",\"kind\":", w->out);
		json_str(w->out, kind);
	} else {
		mp_str(o, AS_K_status, status, sizeof(status));
		fputs(",\"status\":", w->out);
		json_str(w->out, status);
	}
	fputs("}}", w->out);
}

/* d = [task id, gap, duration, finished] per run */
static void emit_task_runs(struct ch_writer *w, const msgpack_object *o)
{
	int64_t tid;
	uint64_t start;
	char buf[64];
	const msgpack_object *d = mp_get(o, AS_K_d);
	mp_i64(o, AS_K_tid, &tid);
	mp_u64(o, AS_K_t0, &start);
	for (uint32_t i = 0; i + 3 < d->via.array.size; i += 4) {
		const msgpack_object *v = &d->via.array.ptr[i];
		start += v[1].via.u64;
		ch_begin(w, "X", task_name(w->tr, v[0].via.u64, buf, sizeof(buf)), "task", tid);
		ch_ts(w->out, "ts", w->tr->offset_ns + start);
		ch_ts(w->out, "dur", v[2].via.u64);
		fprintf(w->out, ",\"args\":{\"task\":%" PRIu64 ",\"then\":\"%s\"}}", v[0].via.u64,
			v[3].via.u64 ? "finished" : "suspended");
	}
}

static void emit_callback(struct ch_writer *w, const msgpack_object *o)
{
	int64_t tid;
	uint64_t fn, t, dur;
	char buf[64], source[24] = "";
	mp_i64(o, AS_K_tid, &tid);
	mp_u64(o, AS_K_fn, &fn);
	mp_u64(o, AS_K_t, &t);
	mp_u64(o, AS_K_dur, &dur);
	mp_str(o, AS_K_source, source, sizeof(source));
	ch_begin(w, "X", func_name(w->tr, fn, buf, sizeof(buf)), "callback", tid);
	ch_ts(w->out, "ts", w->tr->offset_ns + t);
	ch_ts(w->out, "dur", dur);
	fputs(",\"args\":{\"source\":", w->out);
	json_str(w->out, source);
	fputs(",\"duration_ms\":", w->out);
	json_ms(w->out, dur);
	fputs("}}", w->out);
}

/* the stack most samples of a stall caught (the first of equals) */
static uint64_t most_common(const msgpack_object *samples)
{
	uint64_t best = 0;
	uint32_t best_n = 0, n = samples->via.array.size;
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *a = &samples->via.array.ptr[i];
		uint32_t c = 0;
		if (a->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			continue;
		for (uint32_t j = i; j < n; j++)
			c += samples->via.array.ptr[j].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
			     samples->via.array.ptr[j].via.u64 == a->via.u64;
		if (c > best_n) {
			best_n = c;
			best = a->via.u64;
		}
	}
	return best;
}

/* a stall: the busy part of an iteration that no blocking call explains,
 * drawn from the iteration's start */
static void emit_stall(struct ch_writer *w, const msgpack_object *o)
{
	int64_t tid;
	uint64_t t, dur, u;
	mp_i64(o, AS_K_tid, &tid);
	mp_u64(o, AS_K_t, &t);
	mp_u64(o, AS_K_dur, &dur);
	ch_begin(w, "X", "stall", "stall", tid);
	ch_ts(w->out, "ts", w->tr->offset_ns + t);
	ch_ts(w->out, "dur", dur);
	fputs(",\"args\":{\"stall_ms\":", w->out);
	json_ms(w->out, dur);
	if (mp_u64(o, AS_K_iteration, &u) == 0) {
		fputs(",\"iteration_ms\":", w->out);
		json_ms(w->out, u);
	}
	if (mp_u64(o, AS_K_blocked, &u) == 0) {
		fputs(",\"blocked_ms\":", w->out);
		json_ms(w->out, u);
	}
	if (mp_u64(o, AS_K_sampled, &u) == 0)
		fprintf(w->out, ",\"samples_taken\":%" PRIu64, u);
	if (mp_u64(o, AS_K_sampling_ns, &u) == 0) {
		fputs(",\"sampling_ms\":", w->out);
		json_ms(w->out, u);
	}
	const msgpack_object *samples = mp_get(o, AS_K_samples);
	if (samples && samples->type == MSGPACK_OBJECT_ARRAY) {
		fputs(",\"stack_ids\":", w->out);
		json_object(w->out, samples);
		emit_stack(w, most_common(samples));
	}
	fputs("}}", w->out);
}

/* the shim's cumulative estimate of its cost, a counter over the run */
static void emit_overhead(struct ch_writer *w, const msgpack_object *o)
{
	uint64_t t, loop = 0, cpu = 0;
	if (mp_u64(o, AS_K_t, &t) != 0)
		return;
	mp_u64(o, AS_K_loop_ns, &loop);
	mp_u64(o, AS_K_collector_cpu_ns, &cpu);
	ch_begin(w, "C", "shim overhead", "asyncshim", w->tr->pid);
	ch_ts(w->out, "ts", w->tr->offset_ns + t);
	fputs(",\"args\":{\"on_loops_ms\":", w->out);
	json_ms(w->out, loop);
	fputs(",\"collector_cpu_ms\":", w->out);
	json_ms(w->out, cpu);
	fputs("}}", w->out);
}

/* ---- spans: kept from begin to end (open ones only), written at the end ---- */

static int cmp_span(const void *a, const void *b)
{
	uint64_t x = ((const struct ch_span *)a)->id, y = ((const struct ch_span *)b)->id;
	return x < y ? -1 : x > y;
}

static struct ch_span *open_span(struct ch_writer *w, uint64_t id)
{
	struct ch_span key = { .id = id };
	void **p = id ? tfind(&key, &w->spans, cmp_span) : NULL;
	return p ? *p : NULL;
}

static void span_begin(struct ch_writer *w, const msgpack_object *o)
{
	char kind[16] = "";
	struct ch_span *s = calloc(1, sizeof(*s));
	if (!s)
		return;
	if (mp_u64(o, AS_K_id, &s->id) != 0 || !s->id || mp_u64(o, AS_K_t, &s->t) != 0 || mp_i64(o, AS_K_tid, &s->tid) != 0 ||
	    mp_str(o, AS_K_name, s->name + 8, sizeof(s->name) - 8) != 0 || open_span(w, s->id)) {
		free(s);
		return;
	}
	mp_str(o, AS_K_kind, kind, sizeof(kind));
	s->request = !strcmp(kind, "request");
	memcpy(s->name, s->request ? "request " : "        ", 8);
	if (!s->request)
		memmove(s->name, s->name + 8, strlen(s->name + 8) + 1);
	mp_u64(o, AS_K_parent, &s->parent);
	const struct ch_span *parent = open_span(w, s->parent);
	s->root = parent ? parent->root : s->id;
	if (!tsearch(s, &w->spans, cmp_span))
		free(s);
}

static void span_slice(struct ch_writer *w, const char *name, uint64_t root, int64_t tid, uint64_t t0, uint64_t t1,
		       const char *args)
{
	ch_begin(w, "b", name, "span", tid);
	fprintf(w->out, ",\"id\":\"0x%" PRIx64 "\"", root);
	ch_ts(w->out, "ts", w->tr->offset_ns + t0);
	fprintf(w->out, ",\"args\":{%s}}", args);
	ch_begin(w, "e", name, "span", tid);
	fprintf(w->out, ",\"id\":\"0x%" PRIx64 "\"", root);
	ch_ts(w->out, "ts", w->tr->offset_ns + (t1 > t0 ? t1 : t0));
	fputc('}', w->out);
}

static void span_end(struct ch_writer *w, const msgpack_object *o)
{
	uint64_t id, t;
	char args[96];
	if (mp_u64(o, AS_K_id, &id) != 0 || mp_u64(o, AS_K_t, &t) != 0)
		return;
	struct ch_span *s = open_span(w, id);
	if (!s)
		return;
	snprintf(args, sizeof(args), "\"span\":%" PRIu64 ",\"parent\":%" PRIu64, s->id, s->parent);
	span_slice(w, s->name, s->root, s->tid, s->t, t, args);
	tdelete(s, &w->spans, cmp_span);
	free(s);
}

static void span_cumulative(struct ch_writer *w, const msgpack_object *o)
{
	uint64_t parent = 0, t, count, total, min = 0, max = 0;
	int64_t tid;
	char name[64], label[96], args[128];
	mp_u64(o, AS_K_parent, &parent);
	const struct ch_span *p = open_span(w, parent);
	if (!p || mp_u64(o, AS_K_t, &t) != 0 || mp_u64(o, AS_K_count, &count) != 0 || mp_u64(o, AS_K_total, &total) != 0 ||
	    mp_i64(o, AS_K_tid, &tid) != 0 || mp_str(o, AS_K_name, name, sizeof(name)) != 0)
		return;
	mp_u64(o, AS_K_min, &min);
	mp_u64(o, AS_K_max, &max);
	snprintf(label, sizeof(label), "%s x%" PRIu64, name, count);
	snprintf(args, sizeof(args), "\"count\":%" PRIu64 ",\"total_ns\":%" PRIu64 ",\"min_ns\":%" PRIu64
		 ",\"max_ns\":%" PRIu64, count, total, min, max);
	span_slice(w, label, p->root, tid, t, t + total, args);
}

static int emit_visit(const msgpack_object *o, uint64_t index, void *ctx, char *err, size_t errlen)
{
	struct ch_writer *w = ctx;
	char type[32] = "";
	mp_str(o, AS_K_type, type, sizeof(type));
	if (index > 0 && !strcmp(type, AS_TYPE(iters)))
		emit_iters(w, o);
	else if (index > 0 && !strcmp(type, AS_TYPE(block)))
		emit_block(w, o);
	else if (!strcmp(type, AS_TYPE(task)) || !strcmp(type, AS_TYPE(task_end)))
		emit_task(w, o, type[4] == '\0');
	else if (!strcmp(type, AS_TYPE(task_runs)))
		emit_task_runs(w, o);
	else if (!strcmp(type, AS_TYPE(callback)))
		emit_callback(w, o);
	else if (!strcmp(type, AS_TYPE(stall)))
		emit_stall(w, o);
	else if (!strcmp(type, AS_TYPE(overhead)))
		emit_overhead(w, o);
	else if (!strcmp(type, AS_TYPE(span)))
		span_begin(w, o);
	else if (!strcmp(type, AS_TYPE(span_end)))
		span_end(w, o);
	else if (!strcmp(type, AS_TYPE(span_cumulative)))
		span_cumulative(w, o);
	(void)err, (void)errlen;
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
	for (int i = 0; i < n; i++) {
		for (size_t k = 0; k < trs[i].nfuncs; k++)
			free(trs[i].funcs[k].name);
		free(trs[i].funcs);
		free(trs[i].tasks);
		free(trs[i].threads);
		if (trs[i].model) {
			stacks_free(trs[i].model->stacks);
			free(trs[i].model);
		}
	}
	free(trs);
}

static int fail(char *err, size_t errlen, const char *path, const char *why)
{
	char copy[256];
	snprintf(copy, sizeof(copy), "%s", why);
	snprintf(err, errlen, "%s: %s", path, copy);
	return -1;
}

int export_chrome(FILE *out, struct trace_src *srcs, int npaths, char *err, size_t errlen)
{
	struct ch_trace *trs = calloc((size_t)npaths, sizeof(*trs));
	char why[256];
	if (!trs)
		return fail(err, errlen, srcs[0].path, "out of memory");
	uint64_t origin = UINT64_MAX;
	for (int i = 0; i < npaths; i++) {
		trs[i].path = srcs[i].path;
		if (trace_pass(&srcs[i], index_visit, &trs[i], why, sizeof(why)) != 0) {
			ch_free(trs, npaths);
			return fail(err, errlen, srcs[i].path, why);
		}
		if (trs[i].ntasks)
			qsort(trs[i].tasks, trs[i].ntasks, sizeof(*trs[i].tasks), cmp_task);
		if (trs[i].nfuncs)
			qsort(trs[i].funcs, trs[i].nfuncs, sizeof(*trs[i].funcs), cmp_func);
		if (trs[i].start_unix_ns < origin)
			origin = trs[i].start_unix_ns;
	}
	struct ch_writer w = { .out = out };
	fputs("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[", out);
	for (int i = 0; i < npaths; i++) {
		w.tr = &trs[i];
		trs[i].offset_ns = trs[i].start_unix_ns - origin;
		int rc = trace_pass(&srcs[i], emit_visit, &w, why, sizeof(why));
		tdestroy(w.spans, free);        /* spans still open at the end: not drawn */
		w.spans = NULL;
		if (rc != 0) {
			ch_free(trs, npaths);
			return fail(err, errlen, srcs[i].path, why);
		}
		emit_metadata(&w);
	}
	fputs("\n],\"otherData\":{\"generator\":\"asyncshim export --format chrome\",\"origin_unix_ns\":", out);
	fprintf(out, "%" PRIu64 ",\"traces\":[", origin);
	for (int i = 0; i < npaths; i++) {
		if (i)
			fputc(',', out);
		json_str(out, srcs[i].path);
	}
	fputs("]}}\n", out);
	ch_free(trs, npaths);
	return 0;
}
