/* tasks.c — tasks, await points and slow callbacks from a trace.
 *
 * Records: `task` (created), `task_runs` (batches of runs: id, start, length,
 * how the run ended), `task_end`, `callback` (a slow loop callback) and
 * `func` (a function address named once).  A task's records may come from
 * several threads in any order, so everything here is order-independent:
 * per task we keep sums, the first run start and the last run end.
 * Lookups by id or address use glibc's tsearch trees. */
#include "tasks.h"
#include "json.h"
#include "stacks.h"
#include "trace.h"

#include <inttypes.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>

#define TOP_N 10
#define TREE_MAX 10000          /* tree nodes written in a JSON report */
#define TREE_DEPTH 100          /* and levels: JSON readers limit nesting */
#define TEXT_TREE_LINES 40

enum { ST_RUNNING = 0, ST_COMPLETED, ST_CANCELLED, ST_FAILED };
static const char *const status_names[] = { "running", "completed", "cancelled", "failed" };

struct task {
	uint64_t id, parent, fn;
	int64_t tid;
	int created_seen;            /* its `task` record is in the trace */
	int kind;                    /* 1 ucontext, 2 uv_work */
	int status;
	uint64_t created, ended;     /* ns */
	uint64_t first_run, last_end;/* first run start (UINT64_MAX: never ran), last run end */
	uint64_t run_ns;
	uint64_t runs, suspensions;
	struct task *first_child, *last_child, *next_sibling;
};

struct func {
	uint64_t addr, offset;
	char *name, *module;
};

struct cb_stat {
	uint64_t fn;
	char source[24];
	uint64_t count, total_ns, max_ns;
};

struct await_stat {
	uint64_t fn, tasks, suspensions, resumed, wait_ns;
};

struct task_model {
	void *tasks;                /* tsearch: struct task by id */
	void *funcs;                /* tsearch: struct func by addr */
	void *cbs;                  /* tsearch: struct cb_stat by (fn, source) */
	/* after tasks_finish */
	uint64_t end_ns;
	struct task **all;          /* created in this trace, by id */
	size_t n;
	struct task **roots;
	size_t nroots;
	uint64_t created, completed, cancelled, failed, running;
	struct await_stat *awaits;
	size_t nawaits;
	struct cb_stat **cbv;
	size_t ncbs;
};

static int cmp_task(const void *a, const void *b)
{
	uint64_t x = ((const struct task *)a)->id, y = ((const struct task *)b)->id;
	return x < y ? -1 : x > y;
}

static int cmp_func(const void *a, const void *b)
{
	uint64_t x = ((const struct func *)a)->addr, y = ((const struct func *)b)->addr;
	return x < y ? -1 : x > y;
}

static int cmp_cb(const void *a, const void *b)
{
	const struct cb_stat *x = a, *y = b;
	if (x->fn != y->fn)
		return x->fn < y->fn ? -1 : 1;
	return strcmp(x->source, y->source);
}

int tasks_is_type(const char *type)
{
	return !strcmp(type, AS_TYPE(task)) || !strcmp(type, AS_TYPE(task_runs)) || !strcmp(type, AS_TYPE(task_end)) ||
	       !strcmp(type, AS_TYPE(callback)) || !strcmp(type, AS_TYPE(func));
}

static struct task *task_get(struct task_model *m, uint64_t id)
{
	struct task key = { .id = id };
	void *found = tfind(&key, &m->tasks, cmp_task);
	if (found)
		return *(struct task **)found;
	struct task *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->id = id;
	t->first_run = UINT64_MAX;
	if (!tsearch(t, &m->tasks, cmp_task)) {
		free(t);
		return NULL;
	}
	return t;
}

static const struct func *func_find(const struct task_model *m, uint64_t addr)
{
	struct func key = { .addr = addr };
	void *found = tfind(&key, &m->funcs, cmp_func);
	return found ? *(struct func **)found : NULL;
}

static uint64_t max64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static int load_task(struct task_model *m, const msgpack_object *o, uint64_t *last)
{
	uint64_t id, fn, t;
	char kind[16] = "";
	if (mp_u64(o, AS_K_id, &id) || !id || mp_u64(o, AS_K_fn, &fn) || mp_u64(o, AS_K_t, &t))
		return -1;
	struct task *k = task_get(m, id);
	if (!k)
		return -1;
	k->created_seen = 1;
	k->fn = fn;
	k->created = t;
	if (mp_u64(o, AS_K_parent, &k->parent) != 0)
		k->parent = 0;
	mp_i64(o, AS_K_tid, &k->tid);
	mp_str(o, AS_K_kind, kind, sizeof(kind));
	k->kind = !strcmp(kind, "ucontext") ? 1 : !strcmp(kind, "uv_work") ? 2 : 0;
	*last = t;
	return 0;
}

static int load_runs(struct task_model *m, const msgpack_object *o, uint64_t *last)
{
	uint64_t start;
	const msgpack_object *d = mp_get(o, AS_K_d);
	if (mp_u64(o, AS_K_t0, &start) || !d || d->type != MSGPACK_OBJECT_ARRAY || d->via.array.size % 4)
		return -1;
	for (uint32_t i = 0; i < d->via.array.size; i += 4) {
		const msgpack_object *v = &d->via.array.ptr[i];
		for (int j = 0; j < 4; j++)
			if (v[j].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
				return -1;
		uint64_t id = v[0].via.u64, gap = v[1].via.u64, dur = v[2].via.u64, end = v[3].via.u64;
		if (!id || end > 1 || gap > UINT64_MAX - start || dur > UINT64_MAX - start - gap)
			return -1;
		start += gap;
		struct task *k = task_get(m, id);
		if (!k)
			return -1;
		k->runs++;
		k->run_ns += dur;
		k->suspensions += end == 0;
		if (start < k->first_run)
			k->first_run = start;
		k->last_end = max64(k->last_end, start + dur);
		*last = max64(*last, start + dur);
	}
	return 0;
}

static int load_end(struct task_model *m, const msgpack_object *o, uint64_t *last)
{
	uint64_t id, t;
	char status[16];
	if (mp_u64(o, AS_K_id, &id) || !id || mp_u64(o, AS_K_t, &t) || mp_str(o, AS_K_status, status, sizeof(status)))
		return -1;
	int st = !strcmp(status, "completed") ? ST_COMPLETED : !strcmp(status, "cancelled") ? ST_CANCELLED
		 : !strcmp(status, "failed") ? ST_FAILED : -1;
	if (st < 0)
		return -1;
	struct task *k = task_get(m, id);
	if (!k)
		return -1;
	k->status = st;
	k->ended = t;
	*last = t;
	return 0;
}

static int load_callback(struct task_model *m, const msgpack_object *o, uint64_t *last)
{
	struct cb_stat key;
	uint64_t t, dur;
	memset(&key, 0, sizeof(key));
	if (mp_u64(o, AS_K_fn, &key.fn) || mp_u64(o, AS_K_t, &t) || mp_u64(o, AS_K_dur, &dur) ||
	    mp_str(o, AS_K_source, key.source, sizeof(key.source)) || dur > UINT64_MAX - t)
		return -1;
	void *found = tfind(&key, &m->cbs, cmp_cb);
	struct cb_stat *c = found ? *(struct cb_stat **)found : NULL;
	if (!c) {
		c = malloc(sizeof(*c));
		if (!c)
			return -1;
		*c = key;
		if (!tsearch(c, &m->cbs, cmp_cb)) {
			free(c);
			return -1;
		}
	}
	c->count++;
	c->total_ns += dur;
	c->max_ns = max64(c->max_ns, dur);
	*last = t + dur;
	return 0;
}

static char *dup_str(const msgpack_object *o, enum as_trace_key key)
{
	const msgpack_object *v = mp_get(o, key);
	if (!v || v->type != MSGPACK_OBJECT_STR)
		return NULL;
	return strndup(v->via.str.ptr, v->via.str.size);
}

static int load_func(struct task_model *m, const msgpack_object *o)
{
	struct func key = { 0 };
	if (mp_u64(o, AS_K_addr, &key.addr))
		return -1;
	if (func_find(m, key.addr))
		return 0;       /* the first one wins */
	struct func *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->addr = key.addr;
	mp_u64(o, AS_K_offset, &f->offset);
	f->name = dup_str(o, AS_K_name);
	f->module = dup_str(o, AS_K_module);
	if (!tsearch(f, &m->funcs, cmp_func)) {
		free(f->name);
		free(f->module);
		free(f);
		return -1;
	}
	return 0;
}

int tasks_load(struct task_model **mp, const char *type, const msgpack_object *o, uint64_t *last_ns)
{
	*last_ns = 0;
	if (!*mp && !(*mp = calloc(1, sizeof(**mp))))
		return -1;
	struct task_model *m = *mp;
	if (!strcmp(type, AS_TYPE(task)))
		return load_task(m, o, last_ns);
	if (!strcmp(type, AS_TYPE(task_runs)))
		return load_runs(m, o, last_ns);
	if (!strcmp(type, AS_TYPE(task_end)))
		return load_end(m, o, last_ns);
	if (!strcmp(type, AS_TYPE(callback)))
		return load_callback(m, o, last_ns);
	if (!strcmp(type, AS_TYPE(func)))
		return load_func(m, o);
	return 0;
}

/* ---- finishing: counts, tree, statistics ---- */

struct walk {
	struct task_model *m;
	int count_only;
	size_t n;
};

static void walk_task(const void *node, VISIT which, void *closure)
{
	struct walk *w = closure;
	if (which != postorder && which != leaf)
		return;
	struct task *t = *(struct task *const *)node;
	if (!t->created_seen)
		return;     /* runs of a task created before this trace (fork parent) */
	if (!w->count_only)
		w->m->all[w->n] = t;
	w->n++;
}

static void walk_cb(const void *node, VISIT which, void *closure)
{
	struct walk *w = closure;
	if (which != postorder && which != leaf)
		return;
	if (!w->count_only)
		w->m->cbv[w->n] = *(struct cb_stat *const *)node;
	w->n++;
}

static int cmp_cb_total(const void *a, const void *b)
{
	const struct cb_stat *x = *(struct cb_stat *const *)a, *y = *(struct cb_stat *const *)b;
	return x->total_ns > y->total_ns ? -1 : x->total_ns < y->total_ns;
}

static uint64_t task_wait(const struct task *t)
{
	if (t->runs < 2 || t->last_end < t->first_run)
		return 0;
	uint64_t span = t->last_end - t->first_run;
	return span > t->run_ns ? span - t->run_ns : 0;
}

static uint64_t task_queue_delay(const struct task *t)
{
	return t->first_run != UINT64_MAX && t->first_run > t->created ? t->first_run - t->created : 0;
}

static uint64_t task_duration(const struct task *t, uint64_t end_ns)
{
	uint64_t end = t->status != ST_RUNNING ? t->ended : max64(end_ns, t->last_end);
	return end > t->created ? end - t->created : 0;
}

static int cmp_await(const void *a, const void *b)
{
	const struct await_stat *x = a, *y = b;
	if (x->fn != y->fn)
		return x->fn < y->fn ? -1 : 1;
	return 0;
}

static int cmp_await_wait(const void *a, const void *b)
{
	const struct await_stat *x = a, *y = b;
	return x->wait_ns > y->wait_ns ? -1 : x->wait_ns < y->wait_ns;
}

static void build_awaits(struct task_model *m)
{
	size_t n = 0;
	m->awaits = calloc(m->n ? m->n : 1, sizeof(*m->awaits));
	if (!m->awaits)
		return;
	for (size_t i = 0; i < m->n; i++) {
		const struct task *t = m->all[i];
		if (!t->suspensions)
			continue;
		m->awaits[n].fn = t->fn;
		m->awaits[n].tasks = 1;
		m->awaits[n].suspensions = t->suspensions;
		m->awaits[n].resumed = t->runs ? t->runs - 1 : 0;
		m->awaits[n].wait_ns = task_wait(t);
		n++;
	}
	qsort(m->awaits, n, sizeof(*m->awaits), cmp_await);
	size_t out = 0;
	for (size_t i = 0; i < n; i++) {
		if (out && m->awaits[out - 1].fn == m->awaits[i].fn) {
			struct await_stat *a = &m->awaits[out - 1];
			a->tasks++;
			a->suspensions += m->awaits[i].suspensions;
			a->resumed += m->awaits[i].resumed;
			a->wait_ns += m->awaits[i].wait_ns;
		} else {
			m->awaits[out++] = m->awaits[i];
		}
	}
	qsort(m->awaits, out, sizeof(*m->awaits), cmp_await_wait);
	m->nawaits = out;
}

/* Name functions dladdr could not (static functions, programs without
 * exported symbols) from the module map, offline. */
struct name_walk {
	const struct trace *tr;
};

static void walk_name(const void *node, VISIT which, void *closure)
{
	if (which != postorder && which != leaf)
		return;
	struct func *f = *(struct func *const *)node;
	const struct name_walk *w = closure;
	const char *name = f->name ? NULL : stacks_function_at(w->tr, f->addr);
	if (name)
		f->name = strdup(name);
}

void tasks_finish(struct task_model *m, const struct trace *tr)
{
	if (!m)
		return;
	m->end_ns = tr->duration_ns;
	struct name_walk nw = { tr };
	twalk_r(m->funcs, walk_name, &nw);
	struct walk w = { m, 1, 0 };
	twalk_r(m->tasks, walk_task, &w);
	m->all = calloc(w.n ? w.n : 1, sizeof(*m->all));
	m->roots = calloc(w.n ? w.n : 1, sizeof(*m->roots));
	if (!m->all || !m->roots)
		return;
	w.count_only = 0;
	w.n = 0;
	twalk_r(m->tasks, walk_task, &w);   /* in id order */
	m->n = w.n;
	for (size_t i = 0; i < m->n; i++) {
		struct task *t = m->all[i];
		m->created++;
		m->completed += t->status == ST_COMPLETED;
		m->cancelled += t->status == ST_CANCELLED;
		m->failed += t->status == ST_FAILED;
		m->running += t->status == ST_RUNNING;
		struct task key = { .id = t->parent };
		void *found = t->parent && t->parent != t->id ? tfind(&key, &m->tasks, cmp_task) : NULL;
		struct task *p = found ? *(struct task **)found : NULL;
		/* ids grow, so a parent always has the smaller id: no cycles */
		if (p && p->created_seen && p->id < t->id) {
			if (p->last_child)
				p->last_child->next_sibling = t;
			else
				p->first_child = t;
			p->last_child = t;
		} else {
			m->roots[m->nroots++] = t;
		}
	}
	build_awaits(m);
	struct walk wc = { m, 1, 0 };
	twalk_r(m->cbs, walk_cb, &wc);
	m->cbv = calloc(wc.n ? wc.n : 1, sizeof(*m->cbv));
	if (!m->cbv)
		return;
	wc.count_only = 0;
	wc.n = 0;
	twalk_r(m->cbs, walk_cb, &wc);
	m->ncbs = wc.n;
	qsort(m->cbv, m->ncbs, sizeof(*m->cbv), cmp_cb_total);
}

/* ---- names ---- */

static const char *func_name(const struct task_model *m, uint64_t addr, char *buf, size_t len)
{
	const struct func *f = func_find(m, addr);
	if (f && f->name)
		return f->name;
	if (f && f->module) {
		const char *base = strrchr(f->module, '/');
		snprintf(buf, len, "%s+0x%" PRIx64, base ? base + 1 : f->module, f->offset);
	} else {
		snprintf(buf, len, "0x%" PRIx64, addr);
	}
	return buf;
}

static const char *kind_name(int kind)
{
	return kind == 1 ? "ucontext" : kind == 2 ? "uv_work" : "other";
}

/* ---- JSON ---- */

static void json_func(FILE *f, const struct task_model *m, uint64_t addr)
{
	char buf[256];
	const struct func *fn = func_find(m, addr);
	fputs("\"function\":", f);
	json_str(f, func_name(m, addr, buf, sizeof(buf)));
	fputs(",\"module\":", f);
	json_str(f, fn ? fn->module : NULL);
	fprintf(f, ",\"address\":\"0x%" PRIx64 "\"", addr);
}

static void json_task_fields(FILE *f, const struct task_model *m, const struct task *t)
{
	char buf[256];
	fprintf(f, "{\"id\":\"%" PRIu64 "\",\"name\":", t->id);
	json_str(f, func_name(m, t->fn, buf, sizeof(buf)));
	if (t->parent)
		fprintf(f, ",\"parent\":\"%" PRIu64 "\"", t->parent);
	else
		fputs(",\"parent\":null", f);
	fprintf(f, ",\"kind\":\"%s\",\"status\":\"%s\",\"tid\":%" PRId64 ",\"created_ms\":", kind_name(t->kind),
		status_names[t->status], t->tid);
	json_ms(f, t->created);
	fputs(",\"duration_ms\":", f);
	json_ms(f, task_duration(t, m->end_ns));
	fputs(",\"queue_delay_ms\":", f);
	if (t->first_run != UINT64_MAX)
		json_ms(f, task_queue_delay(t));
	else
		fputs("null", f);
	fputs(",\"run_ms\":", f);
	json_ms(f, t->run_ns);
	fputs(",\"wait_ms\":", f);
	json_ms(f, task_wait(t));
	fprintf(f, ",\"runs\":%" PRIu64 ",\"suspensions\":%" PRIu64, t->runs, t->suspensions);
}

/* The tree, iteratively (a chain of tasks can be very deep). */
static uint64_t json_tree(FILE *f, const struct task_model *m, uint64_t tree_max)
{
	struct frame {
		const struct task *t, *next;
		int shown;
	};
	size_t cap = 64, depth = 0;
	uint64_t written = 0, omitted = 0;
	struct frame *st = malloc(cap * sizeof(*st));
	int first_root = 1;
	if (!st)
		return m->n;
	for (size_t r = 0; r < m->nroots; r++) {
		const struct task *t = m->roots[r];
		int show = written < tree_max;
		if (show) {
			if (!first_root)
				fputc(',', f);
			first_root = 0;
			json_task_fields(f, m, t);
			fputs(",\"children\":[", f);
			written++;
		} else {
			omitted++;
		}
		st[0] = (struct frame){ t, t->first_child, show };
		depth = 1;
		while (depth) {
			struct frame *top = &st[depth - 1];
			const struct task *c = top->next;
			if (!c) {
				if (top->shown)
					fputs("]}", f);
				depth--;
				continue;
			}
			top->next = c->next_sibling;
			int cshow = top->shown && written < tree_max && depth < TREE_DEPTH;
			if (cshow) {
				if (c != top->t->first_child)
					fputc(',', f);
				json_task_fields(f, m, c);
				fputs(",\"children\":[", f);
				written++;
			} else {
				omitted++;
			}
			if (depth == cap) {
				struct frame *p = realloc(st, cap * 2 * sizeof(*st));
				if (!p)
					break;
				st = p;
				cap *= 2;
			}
			st[depth++] = (struct frame){ c, c->first_child, cshow };
		}
		while (depth) {         /* only after an allocation failure */
			if (st[depth - 1].shown)
				fputs("]}", f);
			depth--;
		}
	}
	free(st);
	return omitted;
}

static int cmp_run(const void *a, const void *b)
{
	const struct task *x = *(struct task *const *)a, *y = *(struct task *const *)b;
	if (x->run_ns != y->run_ns)
		return x->run_ns > y->run_ns ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_delay(const void *a, const void *b)
{
	const struct task *x = *(struct task *const *)a, *y = *(struct task *const *)b;
	uint64_t dx = task_queue_delay(x), dy = task_queue_delay(y);
	if (dx != dy)
		return dx > dy ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* The top tasks by cmp, in a new array of at most TOP_N. */
static size_t top_tasks(const struct task_model *m, int (*cmp)(const void *, const void *), int ran_only,
			struct task **out)
{
	struct task **v = malloc((m->n ? m->n : 1) * sizeof(*v));
	size_t n = 0;
	if (!v)
		return 0;
	for (size_t i = 0; i < m->n; i++)
		if (!ran_only || m->all[i]->first_run != UINT64_MAX)
			v[n++] = m->all[i];
	qsort(v, n, sizeof(*v), cmp);
	if (n > TOP_N)
		n = TOP_N;
	memcpy(out, v, n * sizeof(*v));
	free(v);
	return n;
}

static void json_top(FILE *f, const struct task_model *m, const char *key, int (*cmp)(const void *, const void *))
{
	struct task *top[TOP_N];
	size_t n = top_tasks(m, cmp, 1, top);
	fprintf(f, ",\"%s\":[", key);
	for (size_t i = 0; i < n; i++) {
		if (i)
			fputc(',', f);
		json_task_fields(f, m, top[i]);
		fputc('}', f);
	}
	fputc(']', f);
}

void tasks_json(FILE *f, const struct task_model *m)
{
	tasks_json_tree(f, m, TREE_MAX);
}

void tasks_json_tree(FILE *f, const struct task_model *m, uint64_t tree_max)
{
	if (!m) {
		fputs("\"tasks\":{\"created\":0,\"completed\":0,\"cancelled\":0,\"failed\":0,\"running_at_exit\":0,"
		      "\"roots\":[],\"tree_omitted\":0,\"top_by_run_time\":[],\"top_by_queue_delay\":[],"
		      "\"await_points\":[]},\"slow_callbacks\":[]", f);
		return;
	}
	fprintf(f, "\"tasks\":{\"created\":%" PRIu64 ",\"completed\":%" PRIu64 ",\"cancelled\":%" PRIu64
		   ",\"failed\":%" PRIu64 ",\"running_at_exit\":%" PRIu64 ",\"roots\":[",
		m->created, m->completed, m->cancelled, m->failed, m->running);
	uint64_t omitted = json_tree(f, m, tree_max);
	fprintf(f, "],\"tree_omitted\":%" PRIu64, omitted);
	json_top(f, m, "top_by_run_time", cmp_run);
	json_top(f, m, "top_by_queue_delay", cmp_delay);
	fputs(",\"await_points\":[", f);
	for (size_t i = 0; i < m->nawaits; i++) {
		const struct await_stat *a = &m->awaits[i];
		if (i)
			fputc(',', f);
		fputc('{', f);
		json_func(f, m, a->fn);
		fprintf(f, ",\"tasks\":%" PRIu64 ",\"suspensions\":%" PRIu64 ",\"resumed\":%" PRIu64
			   ",\"total_wait_ms\":", a->tasks, a->suspensions, a->resumed);
		json_ms(f, a->wait_ns);
		fputs(",\"avg_wait_ms\":", f);
		json_ms(f, a->resumed ? a->wait_ns / a->resumed : 0);
		fputc('}', f);
	}
	fputs("]},\"slow_callbacks\":[", f);
	for (size_t i = 0; i < m->ncbs; i++) {
		const struct cb_stat *c = m->cbv[i];
		if (i)
			fputc(',', f);
		fputc('{', f);
		json_func(f, m, c->fn);
		fputs(",\"source\":", f);
		json_str(f, c->source);
		fprintf(f, ",\"count\":%" PRIu64 ",\"total_ms\":", c->count);
		json_ms(f, c->total_ns);
		fputs(",\"max_ms\":", f);
		json_ms(f, c->max_ns);
		fputc('}', f);
	}
	fputc(']', f);
}

/* ---- text ---- */

static void text_tree(FILE *f, const struct task_model *m)
{
	const struct task **stack = malloc((m->n ? m->n : 1) * sizeof(*stack));
	size_t *depths = malloc((m->n ? m->n : 1) * sizeof(*depths));
	size_t lines = 0, sp = 0;
	char buf[256];
	if (!stack || !depths)
		goto out;
	for (size_t r = m->nroots; r-- > 0;) {
		stack[sp] = m->roots[r];
		depths[sp++] = 0;
	}
	while (sp && lines < TEXT_TREE_LINES) {
		const struct task *t = stack[--sp];
		size_t d = depths[sp];
		fprintf(f, "    %*s%-6" PRIu64 " %-24s %-8s %-9s %9.3f ms run %9.3f wait %9.3f  %" PRIu64 " suspensions\n",
			(int)(d * 2 > 40 ? 40 : d * 2), "", t->id, func_name(m, t->fn, buf, sizeof(buf)),
			kind_name(t->kind), status_names[t->status], ms(task_duration(t, m->end_ns)), ms(t->run_ns),
			ms(task_wait(t)), t->suspensions);
		lines++;
		/* push children in reverse so the first is printed first */
		size_t nc = 0;
		for (const struct task *c = t->first_child; c; c = c->next_sibling)
			nc++;
		sp += nc;
		size_t i = 0;
		for (const struct task *c = t->first_child; c; c = c->next_sibling, i++) {
			stack[sp - 1 - i] = c;
			depths[sp - 1 - i] = d + 1;
		}
	}
	if (lines < m->n)
		fprintf(f, "    ... %zu more tasks (the JSON report has the tree)\n", m->n - lines);
out:
	free(stack);
	free(depths);
}

/* S cut to WIDTH columns with "..." at the end, so a long (C++, Rust)
 * name does not push the columns after it out of line.  OUT holds WIDTH+1. */
static const char *cell(const char *s, size_t width, char *out)
{
	if (strlen(s) <= width)
		return s;
	snprintf(out, width + 1, "%.*s...", (int)(width - 3), s);
	return out;
}

/* func_name, fitted to WIDTH columns (at most 63) */
static const char *func_cell(const struct task_model *m, uint64_t addr, size_t width, char *out)
{
	char buf[256];
	const char *name = func_name(m, addr, buf, sizeof(buf));
	if (strlen(name) > width)
		return cell(name, width, out);
	snprintf(out, width + 1, "%s", name);   /* BUF is gone on return */
	return out;
}

void tasks_text(FILE *f, const struct task_model *m, uint64_t block_ms)
{
	char buf[64], src[64];
	if (!m || (!m->n && !m->ncbs))
		return;
	if (m->n) {
		fprintf(f, "\ntasks: %" PRIu64 " created, %" PRIu64 " completed, %" PRIu64 " cancelled, %" PRIu64
			   " failed, %" PRIu64 " running at exit\n",
			m->created, m->completed, m->cancelled, m->failed, m->running);
		fprintf(f, "  tree (id, entry function, kind, status, duration, run, wait):\n");
		text_tree(f, m);
		struct task *top[TOP_N];
		size_t n = top_tasks(m, cmp_run, 1, top);
		fprintf(f, "  top tasks by run time:\n");
		for (size_t i = 0; i < n; i++)
			fprintf(f, "    %-6" PRIu64 " %-24s %-8s run %9.3f ms  wait %9.3f ms  %" PRIu64 " suspensions\n",
				top[i]->id, func_cell(m, top[i]->fn, 24, buf), kind_name(top[i]->kind),
				ms(top[i]->run_ns), ms(task_wait(top[i])), top[i]->suspensions);
		n = top_tasks(m, cmp_delay, 1, top);
		fprintf(f, "  top tasks by queue delay (created -> first run):\n");
		for (size_t i = 0; i < n; i++)
			fprintf(f, "    %-6" PRIu64 " %-24s %-8s queue delay %9.3f ms\n", top[i]->id,
				func_cell(m, top[i]->fn, 24, buf), kind_name(top[i]->kind),
				ms(task_queue_delay(top[i])));
		if (m->nawaits) {
			fprintf(f, "  await points by entry function:\n    %-24s %6s %11s %14s %12s\n", "function", "tasks",
				"suspensions", "total wait ms", "avg wait ms");
			for (size_t i = 0; i < m->nawaits; i++) {
				const struct await_stat *a = &m->awaits[i];
				fprintf(f, "    %-24s %6" PRIu64 " %11" PRIu64 " %14.3f %12.3f\n",
					func_cell(m, a->fn, 24, buf), a->tasks, a->suspensions, ms(a->wait_ns),
					ms(a->resumed ? a->wait_ns / a->resumed : 0));
			}
		}
	}
	if (m->ncbs) {
		fprintf(f, "\nslow callbacks (>= %" PRIu64 " ms) by function:\n    %-28s %-14s %6s %10s %10s\n",
			block_ms, "function", "source", "count", "total ms", "max ms");
		for (size_t i = 0; i < m->ncbs; i++) {
			const struct cb_stat *c = m->cbv[i];
			fprintf(f, "    %-28s %-14s %6" PRIu64 " %10.1f %10.1f\n", func_cell(m, c->fn, 28, buf),
				cell(c->source, 14, src), c->count, ms(c->total_ns), ms(c->max_ns));
		}
	}
}

static void free_func(void *p)
{
	struct func *f = p;
	free(f->name);
	free(f->module);
	free(f);
}

void tasks_free(struct task_model *m)
{
	if (!m)
		return;
	tdestroy(m->tasks, free);
	tdestroy(m->funcs, free_func);
	tdestroy(m->cbs, free);
	free(m->all);
	free(m->roots);
	free(m->awaits);
	free(m->cbv);
	free(m);
}
