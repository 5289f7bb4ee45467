/* trace.c — stream a trace file through msgpack-c's unpacker, opened once
 * per command however many passes read it. */
#include "trace.h"
#include "findings.h"
#include "tasks.h"
#include "stacks.h"
#include "spans.h"
#include "progress.h"
#include "../preload/record.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* read size; the unpacker's buffer grows only while one record needs more */
#define CHUNK (64 * 1024)

void *trace_grow(void *p, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return p;
	size_t c = *cap ? *cap * 2 : 16;
	void *q = realloc(p, c * size);
	if (q)
		*cap = c;
	return q;
}

const msgpack_object *mp_get(const msgpack_object *map, enum as_trace_key which)
{
	if (map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	const char *key = as_trace_key_names[which];
	size_t klen = strlen(key);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
		    !memcmp(k->via.str.ptr, key, klen))
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

int mp_str(const msgpack_object *map, enum as_trace_key key, char *out, size_t len)
{
	const msgpack_object *v = mp_get(map, key);
	if (!v || v->type != MSGPACK_OBJECT_STR || len == 0)
		return -1;
	size_t n = v->via.str.size < len - 1 ? v->via.str.size : len - 1;
	memcpy(out, v->via.str.ptr, n);
	out[n] = '\0';
	return 0;
}

int mp_u64(const msgpack_object *map, enum as_trace_key key, uint64_t *out)
{
	const msgpack_object *v = mp_get(map, key);
	if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return -1;
	*out = v->via.u64;
	return 0;
}

int mp_i64(const msgpack_object *map, enum as_trace_key key, int64_t *out)
{
	const msgpack_object *v = mp_get(map, key);
	if (!v)
		return -1;
	if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT64_MAX)
		*out = (int64_t)v->via.u64;
	else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
		*out = v->via.i64;
	else
		return -1;
	return 0;
}

static int check_value(const msgpack_object *o, uint64_t index, char *err, size_t errlen)
{
	char type[32];
	if (o->type != MSGPACK_OBJECT_MAP || mp_str(o, AS_K_type, type, sizeof(type)) != 0) {
		snprintf(err, errlen, index ? "corrupt record #%llu (not a typed map)"
					    : "not an asyncshim trace (no header)", (unsigned long long)index);
		return -1;
	}
	if (index == 0) {
		uint64_t fmt;
		if (strcmp(type, AS_TYPE(header)) != 0 || mp_u64(o, AS_K_format, &fmt) != 0) {
			snprintf(err, errlen, "not an asyncshim trace (no header)");
			return -1;
		}
		if (fmt != AS_TRACE_FORMAT) {
			snprintf(err, errlen, "unsupported trace format %llu (this tool reads %d)",
				 (unsigned long long)fmt, AS_TRACE_FORMAT);
			return -1;
		}
	}
	return 0;
}

/* A process killed in the middle of a write (or a copy cut short) ends
 * with half a record: what precedes it is still the trace, so it is read,
 * with one warning (later passes stop before the cut). */
static void warn_truncated(const char *path, uint64_t index, size_t part)
{
	fprintf(stderr, "asyncshim: warning: %s: truncated after record #%llu (an unfinished last record of %zu bytes "
		"ignored); reading what precedes it\n", path, (unsigned long long)index, part);
}

void trace_src_init(struct trace_src *src, const char *path)
{
	memset(src, 0, sizeof(*src));
	src->path = path;
	src->fd = -1;
}

void trace_src_close(struct trace_src *src)
{
	if (src->fd >= 0)
		close(src->fd);
	src->fd = -1;
}

/* Where a pass stands; a later pass stops where the first one stopped. */
struct pass {
	struct trace_src *src;
	msgpack_unpacker up;
	uint64_t index, done;
	int eof;
};

/* The first pass's end: a complete file, or one whose last record is cut */
static int at_end(struct pass *p, char *err, size_t errlen)
{
	size_t part = msgpack_unpacker_message_size(&p->up);
	if (!p->src->validated)
		p->src->end = p->done - part;
	if (part > 0 && p->index > 0 && !p->src->validated) {
		warn_truncated(p->src->path, p->index, part);
		return 0;
	}
	if (part > 0)
		snprintf(err, errlen, "truncated after record #%llu", (unsigned long long)p->index);
	else if (p->index == 0)
		snprintf(err, errlen, "empty file, not an asyncshim trace");
	else
		return 0;
	return -1;
}

/* More bytes into the unpacker: 0, or -1 with a reason */
static int fill(struct pass *p, char *err, size_t errlen)
{
	if (msgpack_unpacker_buffer_capacity(&p->up) < CHUNK / 4 &&
	    !msgpack_unpacker_reserve_buffer(&p->up, CHUNK)) {
		snprintf(err, errlen, "out of memory (record #%llu too large?)", (unsigned long long)p->index);
		return -1;
	}
	size_t want = msgpack_unpacker_buffer_capacity(&p->up);
	if (p->src->validated && p->src->end - p->done < want)
		want = (size_t)(p->src->end - p->done);
	/* the first pass reads on (a pipe has no offset), later ones from 0 */
	char *buf = msgpack_unpacker_buffer(&p->up);
	ssize_t n = !want ? 0 : p->src->validated ? pread(p->src->fd, buf, want, (off_t)p->done)
			       : read(p->src->fd, buf, want);
	if (n < 0) {
		snprintf(err, errlen, "read error: %s", strerror(errno));
		return -1;
	}
	if (n == 0)
		p->eof = 1;
	else
		msgpack_unpacker_buffer_consumed(&p->up, (size_t)n);
	p->done += (uint64_t)n;
	progress_update(p->done);
	return 0;
}

static int run_pass(struct pass *p, trace_visit_fn fn, void *ctx, char *err, size_t errlen)
{
	msgpack_unpacked result;
	msgpack_unpacked_init(&result);
	int rc = 0;
	while (rc == 0) {
		msgpack_unpack_return ret = msgpack_unpacker_next(&p->up, &result);
		if (ret == MSGPACK_UNPACK_SUCCESS) {
			if (check_value(&result.data, p->index, err, errlen) != 0 ||
			    fn(&result.data, p->index, ctx, err, errlen) != 0)
				rc = -1;
			p->index++;
			continue;
		}
		if (ret == MSGPACK_UNPACK_PARSE_ERROR) {
			snprintf(err, errlen, p->index ? "corrupt data after record #%llu"
						       : "not an asyncshim trace (not msgpack)",
				 (unsigned long long)p->index);
			rc = -1;
		} else if (ret == MSGPACK_UNPACK_NOMEM_ERROR) {
			snprintf(err, errlen, "record #%llu too large", (unsigned long long)p->index);
			rc = -1;
		} else if (p->eof) {     /* CONTINUE at the end: a cut record, or none */
			rc = at_end(p, err, errlen);
			break;
		} else {
			rc = fill(p, err, errlen);
		}
	}
	msgpack_unpacked_destroy(&result);
	return rc;
}

int trace_pass(struct trace_src *src, trace_visit_fn fn, void *ctx, char *err, size_t errlen)
{
	if (src->fd < 0 && src->validated) {
		snprintf(err, errlen, "closed after its first pass (trace_release)");
		return -1;
	}
	if (src->fd < 0 && (src->fd = open(src->path, O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (src->validated && lseek(src->fd, 0, SEEK_CUR) < 0) {
		snprintf(err, errlen, "this command reads a trace twice, a pipe once: give it a file");
		return -1;
	}
	struct pass p = { .src = src };
	if (!msgpack_unpacker_init(&p.up, CHUNK)) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	struct stat st;
	progress_begin(src->path, src->validated ? src->end
			: fstat(src->fd, &st) == 0 ? (uint64_t)st.st_size : 0);
	int rc = run_pass(&p, fn, ctx, err, errlen);
	progress_end();
	msgpack_unpacker_destroy(&p.up);
	if (rc == 0)
		src->validated = 1;
	return rc;
}

int trace_stream(const char *path, trace_visit_fn fn, void *ctx, char *err, size_t errlen)
{
	struct trace_src src;
	trace_src_init(&src, path);
	int rc = trace_pass(&src, fn, ctx, err, errlen);
	trace_src_close(&src);
	return rc;
}

/* ---- the summary model ---- */

static struct thread_info *thread_get(struct trace *tr, int64_t tid)
{
	for (size_t i = tr->nthreads; i-- > 0;)
		if (tr->threads[i].tid == tid)
			return &tr->threads[i];
	if (tr->nthreads == tr->cap_threads) {
		size_t cap = tr->cap_threads ? tr->cap_threads * 2 : 16;
		struct thread_info *p = realloc(tr->threads, cap * sizeof(*p));
		if (!p)
			return NULL;
		tr->threads = p;
		tr->cap_threads = cap;
	}
	struct thread_info *t = &tr->threads[tr->nthreads++];
	memset(t, 0, sizeof(*t));
	t->tid = tid;
	return t;
}

static void see_time(struct trace *tr, uint64_t t)
{
	if (t > tr->duration_ns)
		tr->duration_ns = t;
}

static int load_header(struct trace *tr, const msgpack_object *o)
{
	const msgpack_object *opts = mp_get(o, AS_K_options);
	mp_i64(o, AS_K_pid, &tr->pid);
	mp_i64(o, AS_K_ppid, &tr->ppid);
	mp_str(o, AS_K_exe, tr->exe, sizeof(tr->exe));
	const msgpack_object *argv = mp_get(o, AS_K_argv);
	if (argv && argv->type == MSGPACK_OBJECT_ARRAY && argv->via.array.size &&
	    argv->via.array.ptr[0].type == MSGPACK_OBJECT_STR) {
		const msgpack_object_str *a0 = &argv->via.array.ptr[0].via.str;
		size_t n = a0->size < sizeof(tr->argv0) - 1 ? a0->size : sizeof(tr->argv0) - 1;
		memcpy(tr->argv0, a0->ptr, n);
		tr->argv0[n] = '\0';
		tr->argv0[strcspn(tr->argv0, "\n\r")] = '\0';   /* one line in the report */
	}
	mp_u64(o, AS_K_start_unix_ns, &tr->start_unix_ns);
	tr->block_ms = AS_DEFAULT_BLOCK_MS;
	tr->stall_ms = AS_DEFAULT_STALL_MS;
	if (opts)
		mp_u64(opts, AS_K_block_ms, &tr->block_ms);
	if (opts)
		mp_u64(opts, AS_K_stall_ms, &tr->stall_ms);
	return 0;
}

static int load_thread(struct trace *tr, const char *type, const msgpack_object *o)
{
	(void)type;
	int64_t tid;
	if (mp_i64(o, AS_K_tid, &tid) != 0)
		return -1;
	struct thread_info *t = thread_get(tr, tid);
	if (!t)
		return -1;
	mp_str(o, AS_K_name, t->name, sizeof(t->name));
	const msgpack_object *loop = mp_get(o, AS_K_loop);
	if (loop && loop->type == MSGPACK_OBJECT_BOOLEAN && loop->via.boolean)
		t->loop = 1;
	const msgpack_object *ex = mp_get(o, AS_K_exited);
	if (ex && ex->type == MSGPACK_OBJECT_BOOLEAN && ex->via.boolean)
		t->exited = 1;
	uint64_t dropped;
	if (mp_u64(o, AS_K_dropped, &dropped) == 0 && dropped > t->dropped)
		t->dropped = dropped;
	return 0;
}

static int load_iters(struct trace *tr, const char *type, const msgpack_object *o)
{
	(void)type;
	int64_t tid;
	uint64_t start;
	const msgpack_object *d = mp_get(o, AS_K_d);
	if (mp_i64(o, AS_K_tid, &tid) != 0 || mp_u64(o, AS_K_t0, &start) != 0 || !d ||
	    d->type != MSGPACK_OBJECT_ARRAY || d->via.array.size % 2)
		return -1;
	struct thread_info *t = thread_get(tr, tid);
	if (!t)
		return -1;
	t->loop = 1;
	for (uint32_t i = 0; i < d->via.array.size; i += 2) {
		const msgpack_object *gap = &d->via.array.ptr[i], *dur = &d->via.array.ptr[i + 1];
		if (gap->type != MSGPACK_OBJECT_POSITIVE_INTEGER || dur->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			return -1;
		start += gap->via.u64;
		if (hist_add(&t->lag, dur->via.u64) != 0)
			return -1;
		t->iterations++;
		t->busy_ns += dur->via.u64;
		see_time(tr, start + dur->via.u64);
	}
	return 0;
}

static int load_block(struct trace *tr, const char *type, const msgpack_object *o)
{
	(void)type;
	struct blocking b;
	memset(&b, 0, sizeof(b));
	int64_t fd;
	if (mp_i64(o, AS_K_tid, &b.tid) != 0 || mp_str(o, AS_K_call, b.call, sizeof(b.call)) != 0 ||
	    mp_u64(o, AS_K_t, &b.t_ns) != 0 || mp_u64(o, AS_K_dur, &b.dur_ns) != 0)
		return -1;
	b.fd = mp_i64(o, AS_K_fd, &fd) == 0 ? (int)fd : -1;
	mp_str(o, AS_K_fd_kind, b.fd_kind, sizeof(b.fd_kind));
	if (mp_str(o, AS_K_seen_by, b.seen_by, sizeof(b.seen_by)) != 0 || strcmp(b.seen_by, "watchdog"))
		strcpy(b.seen_by, "hook");     /* traces from before the watchdog saw waits too */
	const msgpack_object *nested = mp_get(o, AS_K_nested);
	b.nested = nested && nested->type == MSGPACK_OBJECT_BOOLEAN && nested->via.boolean;
	mp_u64(o, AS_K_stack, &b.stack);
	mp_u64(o, AS_K_span, &b.span);
	mp_u64(o, AS_K_request, &b.request);
	b.seq = tr->records;
	if (findings_block(tr, &b) != 0)
		return -1;
	if (!thread_get(tr, b.tid))
		return -1;
	see_time(tr, b.t_ns + b.dur_ns);
	return 0;
}

static int load_end(struct trace *tr, const char *type, const msgpack_object *o)
{
	(void)type;
	uint64_t d;
	if (mp_u64(o, AS_K_duration_ns, &d) != 0)
		return -1;
	/* an exec that failed is followed by more records and a later end */
	if (d > tr->duration_ns)
		tr->duration_ns = d;
	mp_str(o, AS_K_reason, tr->end_reason, sizeof(tr->end_reason));
	mp_u64(o, AS_K_lost_bytes, &tr->lost_bytes);
	mp_u64(o, AS_K_lost_records, &tr->lost_records);
	mp_u64(o, AS_K_ringless_threads, &tr->ringless_threads);
	mp_u64(o, AS_K_ringless_events, &tr->ringless_events);
	mp_u64(o, AS_K_threads_seen, &tr->threads_seen);
	mp_i64(o, AS_K_exit_status, &tr->exit_status);
	tr->complete = 1;
	return 0;
}

static int load_stall(struct trace *tr, const char *type, const msgpack_object *o)
{
	uint64_t last;
	(void)type;
	int rc = findings_stall(tr, o, tr->records, &last);
	see_time(tr, last);
	return rc;
}

static int load_stacks(struct trace *tr, const char *type, const msgpack_object *o)
{
	uint64_t last;
	int rc = stacks_load(&tr->stacks, type, o, &last);
	see_time(tr, last);
	return rc;
}

static int load_spans(struct trace *tr, const char *type, const msgpack_object *o)
{
	uint64_t last;
	int rc = spans_load(tr, type, o, &last);
	see_time(tr, last);
	return rc;
}

static int load_tasks(struct trace *tr, const char *type, const msgpack_object *o)
{
	uint64_t last;
	int rc = tasks_load(&tr->tasks, type, o, &last);
	see_time(tr, last);
	return rc;
}

static int finish_findings(struct trace *tr, char *err, size_t errlen)
{
	if (findings_finish(tr) == 0)
		return 0;
	snprintf(err, errlen, "out of memory");
	return -1;
}

static int finish_tasks(struct trace *tr, char *err, size_t errlen)
{
	(void)err, (void)errlen;
	tasks_finish(tr->tasks, tr);
	return 0;
}

static void free_stacks(struct trace *tr)
{
	stacks_free(tr->stacks);
}

static void free_tasks(struct trace *tr)
{
	tasks_free(tr->tasks);
}

static void free_spans(struct trace *tr)
{
	spans_free(tr->spans);
}

/* The sections of the model: the record type (or family) each reads, what
 * it does once the whole file is read (in this order: tasks name the
 * findings' stacks, spans take the findings' spans), and its memory. */
static const struct section {
	enum as_trace_type type;        /* one type, or AS_T_COUNT: */
	int (*is_type)(const char *type);       /* a family */
	int (*load)(struct trace *tr, const char *type, const msgpack_object *o);
	int (*finish)(struct trace *tr, char *err, size_t errlen);
	void (*free)(struct trace *tr);
} sections[] = {
	{ AS_T_thread, NULL, load_thread, NULL, NULL },
	{ AS_T_iters, NULL, load_iters, NULL, NULL },
	{ AS_T_block, NULL, load_block, NULL, NULL },
	{ AS_T_end, NULL, load_end, NULL, NULL },
	{ AS_T_stall, NULL, load_stall, finish_findings, findings_free },
	{ AS_T_COUNT, stacks_is_type, load_stacks, NULL, free_stacks },
	{ AS_T_COUNT, tasks_is_type, load_tasks, finish_tasks, free_tasks },
	{ AS_T_COUNT, spans_is_type, load_spans, spans_finish, free_spans },
};

#define NSECTIONS (sizeof(sections) / sizeof(sections[0]))

static const struct section *section_of(const char *type)
{
	for (size_t i = 0; i < NSECTIONS; i++)
		if (sections[i].is_type ? sections[i].is_type(type)
					: !strcmp(type, as_trace_type_names[sections[i].type]))
			return &sections[i];
	return NULL;            /* written by newer versions; skipped */
}

static int load_visit(const msgpack_object *o, uint64_t index, void *ctx, char *err, size_t errlen)
{
	struct trace *tr = ctx;
	char type[32];
	int rc = 0;
	mp_str(o, AS_K_type, type, sizeof(type));
	tr->records++;
	const struct section *sec = index ? section_of(type) : NULL;
	if (index == 0)
		rc = load_header(tr, o);
	else if (sec)
		rc = sec->load(tr, type, o);
	if (rc != 0)
		snprintf(err, errlen, "corrupt '%s' record #%llu", type, (unsigned long long)index);
	return rc;
}

int trace_load(const char *path, struct trace *tr, char *err, size_t errlen)
{
	return trace_load_keep(path, tr, TRACE_KEEP_ALL, err, errlen);
}

int trace_load_keep(const char *path, struct trace *tr, size_t keep, char *err, size_t errlen)
{
	struct trace_src *src = malloc(sizeof(*src));
	if (!src) {
		memset(tr, 0, sizeof(*tr));
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	trace_src_init(src, path);
	int rc = trace_load_src(src, tr, keep, err, errlen);
	tr->own_src = 1;
	return rc;
}

int trace_load_src(struct trace_src *src, struct trace *tr, size_t keep, char *err, size_t errlen)
{
	memset(tr, 0, sizeof(*tr));
	tr->path = src->path;
	tr->src = src;
	tr->keep = keep;
	tr->exit_status = -1;
	int rc = trace_pass(src, load_visit, tr, err, errlen);
	for (size_t i = 0; i < NSECTIONS && rc == 0; i++)
		if (sections[i].finish)
			rc = sections[i].finish(tr, err, errlen);
	return rc;
}

void trace_release(struct trace *tr)
{
	if (tr->own_src && tr->src)
		trace_src_close(tr->src);
}

void trace_free(struct trace *tr)
{
	for (size_t i = 0; i < tr->nthreads; i++)
		hist_free(&tr->threads[i].lag);
	free(tr->threads);
	free(tr->blocks);
	for (size_t i = 0; i < NSECTIONS; i++)
		if (sections[i].free)
			sections[i].free(tr);
	if (tr->own_src && tr->src) {
		trace_src_close(tr->src);
		free(tr->src);
	}
	memset(tr, 0, sizeof(*tr));
}
