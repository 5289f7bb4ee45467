/* spans.c — spans, requests, cumulative spans, and the shim's own records
 * about itself (overhead, ctl, flight), from a trace.
 *
 * Records: `span` (begun), `span_end`, `span_meta`, `span_cumulative`;
 * `block` and `stall` records carry the ids of the span and request they
 * were made in.  Spans outside requests are kept in detail (tree, metadata)
 * up to KEEP_MAX, in the order they began; later ones only count in the
 * statistics by name, and are forgotten when they end unless a finding the
 * report holds names them (spans_hold).  Requests are held in detail (their
 * span tree, metadata, blocking calls) while open; once ended, only the
 * REQ_SLOWEST slowest and the REQ_RECENT most recent stay, as the first
 * ones tell least about a long run; all count in the statistics.  Lookups by id use glibc's tsearch trees.  A span
 * whose begin is not in the trace (a flight-recorder window starts after
 * it) is ignored; one that never ends is reported as unfinished, lasting to
 * the end of the trace. */
#include "spans.h"
#include "findings.h"
#include "hist.h"
#include "json.h"
#include "trace.h"

#include <inttypes.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>

#define KEEP_MAX 20000           /* spans outside requests kept in detail */
#define REQ_SLOWEST 1000         /* ended requests kept in detail: the slowest */
#define REQ_RECENT 500           /* ... and the last ones to end */
#define OWNED_MAX 200000         /* spans held in requests' trees at a time */
#define META_MAX 16              /* metadata entries kept per span */
#define NAMES_MAX 10000          /* distinct names with statistics */
#define JSON_DEPTH 100           /* JSON readers limit nesting */
#define TEXT_TOP 10
#define TEXT_TREE_LINES 40

enum { K_SPAN, K_REQUEST, K_CUMULATIVE };

struct meta {
	char key[32];
	int is_str;
	int64_t i;
	char s[64];
};

struct node {
	uint64_t id, parent_id;
	int64_t tid;
	int kind, ended, kept;
	int owned;                              /* in a request's tree, not (yet) in kept[] */
	int slow, recent;                       /* requests: among the slowest, the recent */
	uint64_t pins;                          /* findings held that name it */
	char name[64];
	uint64_t t, end;
	uint64_t count, total, min, max;        /* cumulative */
	uint64_t lag;                           /* requests: longest overlapping iteration */
	struct meta *meta;
	uint32_t nmeta;
	struct blocking *blocks;                /* requests: their blocking calls */
	uint32_t nblocks, capblocks;
	struct node *parent, *first, *last, *next;
};

struct name_stat {
	int kind;
	char name[64];
	struct hist h;
};

struct cum_stat {
	char name[64], parent[64];
	uint64_t entries, count, total, min, max;
};

struct ctl_event {
	char cmd[16];
	uint64_t t;
};

struct span_model {
	void *by_id;                            /* tsearch: struct node by id */
	struct node **kept;
	size_t nkept, capkept;
	uint64_t omitted, spans, requests;
	struct node **slow;                     /* heap: the slowest ended requests */
	size_t nslow, capslow;
	struct node *recent[REQ_RECENT];        /* ring: the last requests to end */
	size_t recent_at;
	size_t nowned;
	void *names;                            /* tsearch: struct name_stat by (kind, name) */
	struct hist req_h;                      /* request durations (ids are unique: no names) */
	size_t nnames;
	struct cum_stat *cums;
	size_t ncums, capcums;
	int have_overhead;
	uint64_t ov_calls, ov_records, ov_stacks, ov_stacks_ns, ov_sampling, ov_other, ov_cpu, ov_loop, ov_busy;
	uint64_t ov_cum_runs, ov_cum_total, ov_binding;
	double ov_call_ns, ov_record_ns, ov_cum_ns;
	struct ctl_event *ctl;
	size_t nctl, capctl;
	int have_flight;
	char trigger[16];
	uint64_t flight_t, flight_mb, kept_bytes, dropped_bytes;
	uint64_t end_ns;
};

/* ---- lookups ---- */

static int cmp_node(const void *a, const void *b)
{
	uint64_t x = ((const struct node *)a)->id, y = ((const struct node *)b)->id;
	return x < y ? -1 : x > y;
}

static struct node *find(const struct span_model *m, uint64_t id)
{
	if (!m || !id)
		return NULL;
	struct node key;
	key.id = id;
	void *const *p = tfind(&key, &m->by_id, cmp_node);
	return p ? *p : NULL;
}

static int cmp_name(const void *a, const void *b)
{
	const struct name_stat *x = a, *y = b;
	if (x->kind != y->kind)
		return x->kind - y->kind;
	return strcmp(x->name, y->name);
}

static struct name_stat *name_stat(struct span_model *m, int kind, const char *name)
{
	struct name_stat key;
	memset(&key, 0, sizeof(key));
	key.kind = kind;
	snprintf(key.name, sizeof(key.name), "%s", m->nnames < NAMES_MAX ? name : "(other names)");
	void **p = tfind(&key, &m->names, cmp_name);
	if (p)
		return *p;
	struct name_stat *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	*s = key;
	if (!tsearch(s, &m->names, cmp_name)) {
		free(s);
		return NULL;
	}
	m->nnames++;
	return s;
}

static struct span_model *model(struct trace *tr)
{
	if (!tr->spans)
		tr->spans = calloc(1, sizeof(struct span_model));
	return tr->spans;
}

/* ---- loading ---- */

int spans_is_type(const char *type)
{
	return !strcmp(type, AS_TYPE(span)) || !strcmp(type, AS_TYPE(span_end)) || !strcmp(type, AS_TYPE(span_meta)) ||
	       !strcmp(type, AS_TYPE(span_cumulative)) || !strcmp(type, AS_TYPE(overhead)) || !strcmp(type, AS_TYPE(ctl)) ||
	       !strcmp(type, AS_TYPE(flight));
}

static void attach(struct node *parent, struct node *n)
{
	n->parent = parent;
	if (parent->last)
		parent->last->next = n;
	else
		parent->first = n;
	parent->last = n;
}

/* N goes into the tree of an open or kept request when its parent is there:
 * it lives and goes with that request.  1: taken. */
static int own(struct span_model *m, struct node *n, struct node *parent)
{
	if (!parent || !parent->owned || !parent->kept || m->nowned >= OWNED_MAX)
		return 0;
	n->kept = n->owned = 1;
	m->nowned++;
	attach(parent, n);
	return 1;
}

static int keep(struct span_model *m, struct node *n)
{
	struct node **p = trace_grow(m->kept, &m->capkept, m->nkept, sizeof(*p));
	if (!p)
		return -1;
	m->kept = p;
	m->kept[m->nkept++] = n;
	n->kept = 1;
	struct node *parent = find(m, n->parent_id);
	if (parent && parent->kept && !parent->owned)
		attach(parent, n);
	return 0;
}

static int load_span(struct span_model *m, const msgpack_object *o, uint64_t *last)
{
	struct node *n = calloc(1, sizeof(*n));
	char kind[16] = "";
	if (!n)
		return -1;
	if (mp_u64(o, AS_K_id, &n->id) != 0 || !n->id || mp_i64(o, AS_K_tid, &n->tid) != 0 ||
	    mp_u64(o, AS_K_t, &n->t) != 0 || mp_str(o, AS_K_name, n->name, sizeof(n->name)) != 0 ||
	    mp_str(o, AS_K_kind, kind, sizeof(kind)) != 0) {
		free(n);
		return -1;
	}
	mp_u64(o, AS_K_parent, &n->parent_id);
	n->kind = !strcmp(kind, "request") ? K_REQUEST : K_SPAN;
	*last = n->t;
	if (find(m, n->id)) {           /* written twice: the first one counts */
		free(n);
		return 0;
	}
	void **p = tsearch(n, &m->by_id, cmp_node);
	if (!p || *p != n) {
		free(n);
		return p ? 0 : -1;
	}
	if (n->kind == K_REQUEST) {
		m->requests++;
		n->kept = n->owned = 1;         /* in detail while open */
		return 0;
	}
	m->spans++;
	if (own(m, n, find(m, n->parent_id)))
		return 0;
	if (m->nkept < KEEP_MAX)
		return keep(m, n);
	m->omitted++;
	return 0;
}

static void pin(struct span_model *m, uint64_t id, int delta);

static void forget(struct span_model *m, struct node *n)
{
	tdelete(n, &m->by_id, cmp_node);
	free(n->meta);
	free(n->blocks);
	free(n);
}

/* A request no longer kept: its blocking calls let go of the names they
 * held, and its tree goes (nodes still open or named by a finding stay
 * findable by id until they end or are let go, but leave the tree). */
static void drop_request(struct span_model *m, struct node *r)
{
	for (uint32_t i = 0; i < r->nblocks; i++) {
		pin(m, r->blocks[i].span, -1);
		pin(m, r->blocks[i].request, -1);
	}
	free(r->blocks);
	r->blocks = NULL;
	r->nblocks = r->capblocks = 0;
	r->next = NULL;
	for (struct node *todo = r; todo;) {     /* the tree, through the next links */
		struct node *x = todo;
		todo = x->next;
		if (x->first) {
			x->last->next = todo;
			todo = x->first;
		}
		x->first = x->last = x->parent = x->next = NULL;
		if (x != r)
			m->nowned--;
		x->kept = x->owned = 0;
		if (x->kind == K_CUMULATIVE) {
			free(x->meta);
			free(x);
		} else if (x->ended && !x->pins) {
			forget(m, x);
		}
	}
}

static int slower(const void *a, const void *b)
{
	const struct node *x = *(struct node *const *)a, *y = *(struct node *const *)b;
	uint64_t dx = x->end - x->t, dy = y->end - y->t;
	if (dx != dy)
		return dx > dy;
	return x->t < y->t;
}

/* Request R ended: it stays while among the slowest or the recent. */
static int offer_request(struct span_model *m, struct node *r)
{
	struct node *out = NULL;
	int rc = keep_offer((void **)&m->slow, &m->nslow, &m->capslow, REQ_SLOWEST, sizeof(r), slower, &r, &out);
	if (rc < 0)
		return -1;
	r->slow = rc == 0 || out != r;
	if (rc == 1 && out != r)
		out->slow = 0;
	struct node *old = m->recent[m->recent_at];
	m->recent[m->recent_at] = r;
	m->recent_at = (m->recent_at + 1) % REQ_RECENT;
	r->recent = 1;
	if (old)
		old->recent = 0;
	if (old && !old->slow)
		drop_request(m, old);
	if (out && out != old && !out->slow && !out->recent)
		drop_request(m, out);
	return 0;
}

static int load_end(struct span_model *m, const msgpack_object *o, uint64_t *last)
{
	uint64_t id, t;
	if (mp_u64(o, AS_K_id, &id) != 0 || mp_u64(o, AS_K_t, &t) != 0)
		return -1;
	*last = t;
	struct node *n = find(m, id);
	if (!n || n->ended)
		return 0;               /* begun before the trace starts */
	n->ended = 1;
	n->end = t >= n->t ? t : n->t;
	struct name_stat *s = n->kind == K_REQUEST ? NULL : name_stat(m, n->kind, n->name);
	if (hist_add(s ? &s->h : &m->req_h, n->end - n->t) != 0)
		return -1;
	if (n->kind == K_REQUEST && n->owned)
		return offer_request(m, n);
	if (!n->kept && !n->pins)
		forget(m, n);
	return 0;
}

static int load_meta(struct span_model *m, const msgpack_object *o)
{
	uint64_t id;
	struct meta x;
	memset(&x, 0, sizeof(x));
	const msgpack_object *v = mp_get(o, AS_K_value);
	if (mp_u64(o, AS_K_id, &id) != 0 || mp_str(o, AS_K_key, x.key, sizeof(x.key)) != 0 || !v)
		return -1;
	if (v->type == MSGPACK_OBJECT_STR) {
		x.is_str = 1;
		mp_str(o, AS_K_value, x.s, sizeof(x.s));
	} else if (mp_i64(o, AS_K_value, &x.i) != 0) {
		return -1;
	}
	struct node *n = find(m, id);
	if (!n || !n->kept)
		return 0;
	for (uint32_t i = 0; i < n->nmeta; i++)
		if (!strcmp(n->meta[i].key, x.key)) {
			n->meta[i] = x;         /* set again: the last value counts */
			return 0;
		}
	if (n->nmeta >= META_MAX)
		return 0;
	struct meta *p = realloc(n->meta, (n->nmeta + 1) * sizeof(*p));
	if (!p)
		return -1;
	n->meta = p;
	n->meta[n->nmeta++] = x;
	return 0;
}

static int add_cum_stat(struct span_model *m, const struct node *n, const char *parent)
{
	struct cum_stat *c = NULL;
	for (size_t i = 0; i < m->ncums; i++)
		if (!strcmp(m->cums[i].name, n->name) && !strcmp(m->cums[i].parent, parent))
			c = &m->cums[i];
	if (!c) {
		if (m->ncums >= NAMES_MAX)
			return 0;
		struct cum_stat *p = trace_grow(m->cums, &m->capcums, m->ncums, sizeof(*p));
		if (!p)
			return -1;
		m->cums = p;
		c = &m->cums[m->ncums++];
		memset(c, 0, sizeof(*c));
		snprintf(c->name, sizeof(c->name), "%s", n->name);
		snprintf(c->parent, sizeof(c->parent), "%s", parent);
		c->min = UINT64_MAX;
	}
	c->entries++;
	c->count += n->count;
	c->total += n->total;
	c->min = n->min < c->min ? n->min : c->min;
	c->max = n->max > c->max ? n->max : c->max;
	return 0;
}

static int load_cumulative(struct span_model *m, const msgpack_object *o, uint64_t *last)
{
	struct node x;
	memset(&x, 0, sizeof(x));
	x.kind = K_CUMULATIVE;
	x.ended = 1;
	if (mp_i64(o, AS_K_tid, &x.tid) != 0 || mp_str(o, AS_K_name, x.name, sizeof(x.name)) != 0 ||
	    mp_u64(o, AS_K_t, &x.t) != 0 || mp_u64(o, AS_K_count, &x.count) != 0 || mp_u64(o, AS_K_total, &x.total) != 0 ||
	    mp_u64(o, AS_K_min, &x.min) != 0 || mp_u64(o, AS_K_max, &x.max) != 0 || !x.count)
		return -1;
	mp_u64(o, AS_K_parent, &x.parent_id);
	x.end = x.t + x.total;
	*last = x.t;
	struct node *parent = find(m, x.parent_id);
	if (x.parent_id && !parent)
		return 0;               /* its parent began before the trace */
	if (add_cum_stat(m, &x, parent ? parent->name : "") != 0)
		return -1;
	if (parent && parent->owned) {
		struct node *n = parent->kept && m->nowned < OWNED_MAX ? malloc(sizeof(*n)) : NULL;
		if (n) {
			*n = x;
			own(m, n, parent);
		} else {
			m->omitted++;
		}
		return 0;
	}
	if (m->nkept >= KEEP_MAX || (parent && !parent->kept)) {
		m->omitted++;
		return 0;
	}
	struct node *n = malloc(sizeof(*n));
	if (!n)
		return -1;
	*n = x;
	if (keep(m, n) != 0) {
		free(n);
		return -1;
	}
	return 0;
}

static int load_overhead(struct span_model *m, const msgpack_object *o, uint64_t *last)
{
	const msgpack_object *v;
	if (mp_u64(o, AS_K_t, last) != 0 || mp_u64(o, AS_K_calls, &m->ov_calls) != 0 ||
	    mp_u64(o, AS_K_records, &m->ov_records) != 0 || mp_u64(o, AS_K_loop_ns, &m->ov_loop) != 0)
		return -1;
	mp_u64(o, AS_K_stacks, &m->ov_stacks);
	mp_u64(o, AS_K_sampling_ns, &m->ov_sampling);
	mp_u64(o, AS_K_other_records, &m->ov_other);
	mp_u64(o, AS_K_collector_cpu_ns, &m->ov_cpu);
	m->ov_busy = 0;
	mp_u64(o, AS_K_loop_busy_ns, &m->ov_busy);
	m->ov_call_ns = (v = mp_get(o, AS_K_call_ns)) && v->type == MSGPACK_OBJECT_FLOAT64 ? v->via.f64 : 0;
	m->ov_record_ns = (v = mp_get(o, AS_K_record_ns)) && v->type == MSGPACK_OBJECT_FLOAT64 ? v->via.f64 : 0;
	m->ov_stacks_ns = m->ov_cum_runs = m->ov_cum_total = m->ov_binding = 0;
	mp_u64(o, AS_K_stacks_ns, &m->ov_stacks_ns);
	mp_u64(o, AS_K_cumulative_runs, &m->ov_cum_runs);
	mp_u64(o, AS_K_cumulative_total_ns, &m->ov_cum_total);
	mp_u64(o, AS_K_binding_ns, &m->ov_binding);
	m->ov_cum_ns = (v = mp_get(o, AS_K_cumulative_ns)) && v->type == MSGPACK_OBJECT_FLOAT64 ? v->via.f64 : 0;
	m->have_overhead = 1;
	return 0;
}

static int load_ctl(struct span_model *m, const msgpack_object *o, uint64_t *last)
{
	struct ctl_event e;
	if (mp_str(o, AS_K_cmd, e.cmd, sizeof(e.cmd)) != 0 || mp_u64(o, AS_K_t, &e.t) != 0)
		return -1;
	*last = e.t;
	struct ctl_event *p = trace_grow(m->ctl, &m->capctl, m->nctl, sizeof(*p));
	if (!p)
		return -1;
	m->ctl = p;
	if (m->nctl < 100000)
		m->ctl[m->nctl++] = e;
	return 0;
}

static int load_flight(struct span_model *m, const msgpack_object *o, uint64_t *last)
{
	if (mp_str(o, AS_K_trigger, m->trigger, sizeof(m->trigger)) != 0 || mp_u64(o, AS_K_t, &m->flight_t) != 0)
		return -1;
	mp_u64(o, AS_K_flight_mb, &m->flight_mb);
	mp_u64(o, AS_K_kept_bytes, &m->kept_bytes);
	mp_u64(o, AS_K_dropped_bytes, &m->dropped_bytes);
	m->have_flight = 1;
	*last = 0;
	return 0;
}

int spans_load(struct trace *tr, const char *type, const msgpack_object *o, uint64_t *last_ns)
{
	struct span_model *m = model(tr);
	*last_ns = 0;
	if (!m)
		return -1;
	if (!strcmp(type, AS_TYPE(span)))
		return load_span(m, o, last_ns);
	if (!strcmp(type, AS_TYPE(span_end)))
		return load_end(m, o, last_ns);
	if (!strcmp(type, AS_TYPE(span_meta)))
		return load_meta(m, o);
	if (!strcmp(type, AS_TYPE(span_cumulative)))
		return load_cumulative(m, o, last_ns);
	if (!strcmp(type, AS_TYPE(overhead)))
		return load_overhead(m, o, last_ns);
	if (!strcmp(type, AS_TYPE(ctl)))
		return load_ctl(m, o, last_ns);
	return load_flight(m, o, last_ns);
}

/* A finding held in the report pins the spans it names (DELTA 1), or lets
 * them go (-1): a span no one names is forgotten once it ended. */
static void pin(struct span_model *m, uint64_t id, int delta)
{
	struct node *n = find(m, id);
	if (!n)
		return;
	if (delta > 0) {
		n->pins++;
		return;
	}
	if (n->pins && !--n->pins && n->ended && !n->kept)
		forget(m, n);
}

void spans_hold(struct trace *tr, uint64_t span, uint64_t request, int delta)
{
	if (!tr->spans)
		return;
	pin(tr->spans, span, delta);
	pin(tr->spans, request, delta);
}

void spans_note_block(struct trace *tr, const struct blocking *b)
{
	struct span_model *m = tr->spans;
	struct node *r = find(m, b->request);
	if (!r || !r->kept || r->nblocks >= 100000)
		return;
	if (r->nblocks == r->capblocks) {
		uint32_t cap = r->capblocks ? r->capblocks * 2 : 4;
		struct blocking *p = realloc(r->blocks, cap * sizeof(*p));
		if (!p)
			return;
		r->blocks = p;
		r->capblocks = cap;
	}
	r->blocks[r->nblocks++] = *b;
	spans_hold(tr, b->span, b->request, 1);         /* for as long as the request */
}

/* ---- the lag each request suffered ----
 * The longest iteration on the request's thread among those that overlap
 * it: how long any event of the request could have waited for the loop. */

struct lag_pass {
	struct span_model *m;
	struct node **reqs;      /* requests by (tid, start) */
	size_t n;
};

static int by_tid_start(const void *a, const void *b)
{
	const struct node *x = *(struct node *const *)a, *y = *(struct node *const *)b;
	if (x->tid != y->tid)
		return x->tid < y->tid ? -1 : 1;
	return x->t < y->t ? -1 : x->t > y->t;
}

/* Requests on TID that overlap [s, e): a binary search for the first that
 * starts before e, then back while they could still be running (requests
 * on one thread rarely overlap many others). */
static void lag_iteration(struct lag_pass *p, int64_t tid, uint64_t s, uint64_t d)
{
	size_t lo = 0, hi = p->n;
	while (lo < hi) {               /* first request with (tid, t) >= (tid, s + d) */
		size_t mid = (lo + hi) / 2;
		const struct node *r = p->reqs[mid];
		if (r->tid < tid || (r->tid == tid && r->t < s + d))
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo, k = 0; i-- > 0 && k < 64;) {
		struct node *r = p->reqs[i];
		if (r->tid != tid)
			break;
		if (r->end > s) {
			if (d > r->lag)
				r->lag = d;
		} else {
			k++;            /* ended before: tolerate a few, then stop */
		}
	}
}

static int lag_visit(const msgpack_object *o, uint64_t index, void *ctx, char *err, size_t errlen)
{
	(void)index, (void)err, (void)errlen;
	struct lag_pass *p = ctx;
	char type[16];
	int64_t tid;
	uint64_t start;
	if (mp_str(o, AS_K_type, type, sizeof(type)) != 0 || strcmp(type, AS_TYPE(iters)))
		return 0;
	const msgpack_object *d = mp_get(o, AS_K_d);
	if (mp_i64(o, AS_K_tid, &tid) != 0 || mp_u64(o, AS_K_t0, &start) != 0 || !d || d->type != MSGPACK_OBJECT_ARRAY)
		return 0;
	for (uint32_t i = 0; i + 1 < d->via.array.size; i += 2) {
		const msgpack_object *gap = &d->via.array.ptr[i], *dur = &d->via.array.ptr[i + 1];
		if (gap->type != MSGPACK_OBJECT_POSITIVE_INTEGER || dur->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			return 0;
		start += gap->via.u64;
		lag_iteration(p, tid, start, dur->via.u64);
	}
	return 0;
}

static void walk_requests(const void *p, VISIT which, void *arg)
{
	if (which != postorder && which != leaf)
		return;
	struct node *n = *(struct node *const *)p, ***v = arg;
	if (n->kind == K_REQUEST && n->owned)
		*(*v)++ = n;
}

static int by_start(const void *a, const void *b)
{
	const struct node *x = *(struct node *const *)a, *y = *(struct node *const *)b;
	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* The requests still held (open, slowest, recent) and their trees join
 * the kept list, requests in the order they began. */
static int keep_requests(struct span_model *m)
{
	size_t n = m->nslow + REQ_RECENT + m->requests;       /* a bound: open ones too */
	n = n < m->requests ? n : m->requests;
	struct node **reqs = calloc(n ? n : 1, sizeof(*reqs)), **end = reqs;
	if (!reqs)
		return -1;
	twalk_r(m->by_id, walk_requests, &end);
	qsort(reqs, (size_t)(end - reqs), sizeof(*reqs), by_start);
	int rc = 0;
	for (struct node **r = reqs; r < end && !rc; r++) {
		size_t from = m->nkept;
		struct node *x = *r;
		for (;;) {      /* breadth first: each node's children after it */
			struct node **p = trace_grow(m->kept, &m->capkept, m->nkept, sizeof(*p));
			if (!p) {
				rc = -1;
				break;
			}
			m->kept = p;
			m->kept[m->nkept++] = x;
			x->owned = 0;
			if (x->next && x != *r) {
				x = x->next;
				continue;
			}
			while (from < m->nkept && !m->kept[from]->first)
				from++;
			if (from == m->nkept)
				break;
			x = m->kept[from++]->first;
		}
	}
	free(reqs);
	return rc;
}

int spans_finish(struct trace *tr, char *err, size_t errlen)
{
	struct span_model *m = tr->spans;
	if (!m)
		return 0;
	m->end_ns = tr->duration_ns;
	if (keep_requests(m) != 0)
		return 0;
	struct lag_pass p = { m, calloc(m->nkept ? m->nkept : 1, sizeof(struct node *)), 0 };
	if (!p.reqs)
		return 0;
	for (size_t i = 0; i < m->nkept; i++) {
		struct node *n = m->kept[i];
		if (!n->ended)
			n->end = m->end_ns > n->t ? m->end_ns : n->t;
		if (n->kind == K_REQUEST)
			p.reqs[p.n++] = n;
	}
	int rc = 0;
	if (p.n) {
		qsort(p.reqs, p.n, sizeof(*p.reqs), by_tid_start);
		rc = trace_pass(tr->src, lag_visit, &p, err, errlen);
	}
	free(p.reqs);
	return rc;
}

static void free_name(void *p)
{
	struct name_stat *s = p;
	hist_free(&s->h);
	free(s);
}

static void free_node(void *p)
{
	struct node *n = p;
	free(n->meta);
	free(n->blocks);
	free(n);
}

/* Cumulative spans in a request's tree are not in by_id: when the trace
 * was not finished (keep_requests), they go with their parent. */
static void free_owned_cumulative(const void *p, VISIT which, void *arg)
{
	(void)arg;
	if (which != postorder && which != leaf)
		return;
	struct node *n = *(struct node *const *)p;
	if (!n->owned)
		return;
	for (struct node *c = n->first, *next; c; c = next) {
		next = c->next;
		if (c->kind == K_CUMULATIVE)
			free_node(c);
	}
	n->first = n->last = NULL;
}

void spans_free(struct span_model *m)
{
	if (!m)
		return;
	twalk_r(m->by_id, free_owned_cumulative, NULL);
	/* kept cumulative spans are not in by_id */
	for (size_t i = 0; i < m->nkept; i++)
		if (m->kept[i]->kind == K_CUMULATIVE)
			free_node(m->kept[i]);
	tdestroy(m->by_id, free_node);
	tdestroy(m->names, free_name);
	hist_free(&m->req_h);
	free(m->slow);
	free(m->kept);
	free(m->cums);
	free(m->ctl);
	free(m);
}

/* ---- findings' spans ---- */

const char *spans_name(const struct trace *tr, uint64_t id)
{
	const struct node *n = find(tr->spans, id);
	return n ? n->name : "";
}

void spans_json_attr(FILE *f, const struct trace *tr, uint64_t span, uint64_t request)
{
	const struct node *s = find(tr->spans, span), *r = find(tr->spans, request);
	fputs(",\"span\":", f);
	json_str(f, s ? s->name : NULL);
	fputs(",\"request\":", f);
	json_str(f, r ? r->name : NULL);
}

/* ---- JSON ---- */

static void json_meta(FILE *f, const struct node *n)
{
	fputc('{', f);
	for (uint32_t i = 0; i < n->nmeta; i++) {
		if (i)
			fputc(',', f);
		json_str(f, n->meta[i].key);
		fputc(':', f);
		if (n->meta[i].is_str)
			json_str(f, n->meta[i].s);
		else
			fprintf(f, "%" PRId64, n->meta[i].i);
	}
	fputc('}', f);
}

static void json_children(FILE *f, const struct node *n, int depth);

/* TOTAL, then ,"min_ms", ,"max_ms" and ,"avg_ms" of COUNT spans (ns in, ms out). */
static void json_spread(FILE *f, uint64_t total, uint64_t min, uint64_t max, uint64_t count)
{
	json_ms(f, total);
	fputs(",\"min_ms\":", f);
	json_ms(f, min);
	fputs(",\"max_ms\":", f);
	json_ms(f, max);
	fputs(",\"avg_ms\":", f);
	json_ms(f, count ? total / count : 0);
}

static void json_node(FILE *f, const struct node *n, int depth)
{
	fputs("{\"name\":", f);
	json_str(f, n->name);
	fprintf(f, ",\"tid\":%" PRId64 ",\"at_ms\":", n->tid);
	json_ms(f, n->t);
	fputs(",\"duration_ms\":", f);
	json_ms(f, n->kind == K_CUMULATIVE ? n->total : n->end - n->t);
	if (n->kind == K_CUMULATIVE) {
		fprintf(f, ",\"cumulative\":true,\"count\":%" PRIu64 ",\"total_ms\":", n->count);
		json_spread(f, n->total, n->min, n->max, n->count);
	}
	if (!n->ended)
		fputs(",\"unfinished\":true", f);
	fputs(",\"metadata\":", f);
	json_meta(f, n);
	fputs(",\"children\":", f);
	json_children(f, n, depth + 1);
	fputc('}', f);
}

/* Spans under N; requests inside a span are listed with the requests. */
static void json_children(FILE *f, const struct node *n, int depth)
{
	int first = 1;
	fputc('[', f);
	for (const struct node *c = n->first; c && depth < JSON_DEPTH; c = c->next) {
		if (c->kind == K_REQUEST)
			continue;
		if (!first)
			fputc(',', f);
		first = 0;
		json_node(f, c, depth);
	}
	fputc(']', f);
}

static void json_request(FILE *f, const struct trace *tr, const struct node *n, spans_blocking_fn blocking)
{
	fputs("{\"id\":", f);
	json_str(f, n->name);
	fprintf(f, ",\"tid\":%" PRId64 ",\"at_ms\":", n->tid);
	json_ms(f, n->t);
	fputs(",\"duration_ms\":", f);
	json_ms(f, n->end - n->t);
	fputs(",\"lag_ms\":", f);
	json_ms(f, n->lag);
	if (!n->ended)
		fputs(",\"unfinished\":true", f);
	fputs(",\"metadata\":", f);
	json_meta(f, n);
	fputs(",\"blocking\":[", f);
	for (uint32_t i = 0; i < n->nblocks; i++) {
		if (i)
			fputc(',', f);
		blocking(f, tr, &n->blocks[i]);
	}
	fputs("],\"spans\":", f);
	json_children(f, n, 1);
	fputc('}', f);
}

struct name_list {
	const struct name_stat **v;
	size_t n, cap;
};

static void walk_names(const void *p, VISIT which, void *arg)
{
	if (which != postorder && which != leaf)
		return;
	struct name_list *l = arg;
	const struct name_stat **q = trace_grow(l->v, &l->cap, l->n, sizeof(*q));
	if (!q)
		return;
	l->v = q;
	l->v[l->n++] = *(struct name_stat *const *)p;
}

static int by_total(const void *a, const void *b)
{
	const struct name_stat *x = *(const struct name_stat *const *)a, *y = *(const struct name_stat *const *)b;
	return x->h.sum < y->h.sum ? 1 : x->h.sum > y->h.sum ? -1 : strcmp(x->name, y->name);
}

static void names_sorted(const struct span_model *m, struct name_list *l)
{
	memset(l, 0, sizeof(*l));
	twalk_r(m->names, walk_names, l);
	if (l->n)
		qsort(l->v, l->n, sizeof(*l->v), by_total);
}

/* The loops' busy time the estimate compares with: the shim's own sum
 * (the whole run, also when a flight trace holds only its end), else the
 * iterations in the trace. */
static uint64_t loop_busy(const struct trace *tr)
{
	uint64_t busy = 0;
	if (tr->spans && tr->spans->ov_busy)
		return tr->spans->ov_busy;
	for (size_t i = 0; i < tr->nthreads; i++)
		if (tr->threads[i].loop)
			busy += tr->threads[i].busy_ns;
	return busy;
}

static void json_overhead(FILE *f, const struct trace *tr)
{
	const struct span_model *m = tr->spans;
	if (!m || !m->have_overhead) {
		fputs("null", f);
		return;
	}
	uint64_t busy = loop_busy(tr);
	fputs("{\"estimated_ms\":", f);
	json_ms(f, m->ov_loop);
	fprintf(f, ",\"loop_busy_pct\":%.3f,\"loop_busy_ms\":", busy ? 100.0 * (double)m->ov_loop / (double)busy : 0.0);
	json_ms(f, busy);
	fprintf(f, ",\"calls\":%" PRIu64 ",\"records\":%" PRIu64 ",\"stacks\":%" PRIu64
		   ",\"call_ns\":%.1f,\"record_ns\":%.1f,\"stacks_ms\":",
		m->ov_calls, m->ov_records, m->ov_stacks, m->ov_call_ns, m->ov_record_ns);
	json_ms(f, m->ov_stacks_ns);
	fputs(",\"sampling_ms\":", f);
	json_ms(f, m->ov_sampling);
	fprintf(f, ",\"cumulative_runs\":%" PRIu64 ",\"cumulative_ns\":%.1f,\"cumulative_ms\":", m->ov_cum_runs,
		m->ov_cum_ns);
	json_ms(f, m->ov_cum_total);
	fputs(",\"binding_ms\":", f);
	json_ms(f, m->ov_binding);
	fprintf(f, ",\"other_records\":%" PRIu64 ",\"collector_cpu_ms\":", m->ov_other);
	json_ms(f, m->ov_cpu);
	fputc('}', f);
}

void spans_json(FILE *f, const struct trace *tr, spans_blocking_fn blocking)
{
	const struct span_model *m = tr->spans;
	size_t nkept = m ? m->nkept : 0;
	int first = 1;
	fputs("\"spans\":[", f);
	for (size_t i = 0; i < nkept; i++) {
		const struct node *n = m->kept[i];
		if (n->parent || n->kind == K_REQUEST)
			continue;
		if (!first)
			fputc(',', f);
		first = 0;
		json_node(f, n, 1);
	}
	fputs("],\"requests\":[", f);
	first = 1;
	for (size_t i = 0; i < nkept; i++) {
		const struct node *n = m->kept[i];
		if (n->kind != K_REQUEST)
			continue;
		if (!first)
			fputc(',', f);
		first = 0;
		json_request(f, tr, n, blocking);
	}
	fputs("],\"spans_by_name\":[", f);
	struct name_list l;
	memset(&l, 0, sizeof(l));
	if (m)
		names_sorted(m, &l);
	for (size_t i = 0; i < l.n; i++) {
		const struct name_stat *s = l.v[i];
		fputs(i ? ",{\"name\":" : "{\"name\":", f);
		json_str(f, s->name);
		fprintf(f, ",\"count\":%" PRIu64 ",\"total_ms\":", s->h.count);
		json_ms(f, s->h.sum);
		fputs(",\"p50_ms\":", f);
		json_ms(f, hist_percentile(&s->h, 50));
		fputs(",\"p95_ms\":", f);
		json_ms(f, hist_percentile(&s->h, 95));
		fputs(",\"max_ms\":", f);
		json_ms(f, s->h.max);
		fputc('}', f);
	}
	free(l.v);
	fputs("],\"cumulative\":[", f);
	for (size_t i = 0; m && i < m->ncums; i++) {
		const struct cum_stat *c = &m->cums[i];
		fputs(i ? ",{\"name\":" : "{\"name\":", f);
		json_str(f, c->name);
		fputs(",\"parent\":", f);
		json_str(f, c->parent[0] ? c->parent : NULL);
		fprintf(f, ",\"entries\":%" PRIu64 ",\"count\":%" PRIu64 ",\"total_ms\":", c->entries, c->count);
		json_spread(f, c->total, c->min, c->max, c->count);
		fputc('}', f);
	}
	fprintf(f, "],\"spans_omitted\":%" PRIu64 ",\"overhead\":", m ? m->omitted : 0);
	json_overhead(f, tr);
	fputs(",\"ctl\":[", f);
	for (size_t i = 0; m && i < m->nctl; i++) {
		fputs(i ? ",{\"cmd\":" : "{\"cmd\":", f);
		json_str(f, m->ctl[i].cmd);
		fputs(",\"at_ms\":", f);
		json_ms(f, m->ctl[i].t);
		fputc('}', f);
	}
	fputs("],\"flight\":", f);
	if (m && m->have_flight) {
		fputs("{\"trigger\":", f);
		json_str(f, m->trigger);
		fputs(",\"at_ms\":", f);
		json_ms(f, m->flight_t);
		fprintf(f, ",\"flight_mb\":%" PRIu64 ",\"kept_bytes\":%" PRIu64 ",\"dropped_bytes\":%" PRIu64 "}",
			m->flight_mb, m->kept_bytes, m->dropped_bytes);
	} else {
		fputs("null", f);
	}
}

/* ---- text ---- */

static int by_duration(const void *a, const void *b)
{
	const struct node *x = *(const struct node *const *)a, *y = *(const struct node *const *)b;
	uint64_t dx = x->end - x->t, dy = y->end - y->t;
	return dx < dy ? 1 : dx > dy ? -1 : (x->t > y->t) - (x->t < y->t);
}

static void text_node(FILE *f, const struct trace *tr, const struct node *n, int depth, int *lines)
{
	if (++*lines > TEXT_TREE_LINES) {
		if (*lines == TEXT_TREE_LINES + 1)
			fprintf(f, "%*s...\n", 4 + 2 * depth, "");
		return;
	}
	fprintf(f, "%*s%s", 4 + 2 * depth, "", n->name);
	if (n->kind == K_CUMULATIVE)
		fprintf(f, "  cumulative: %" PRIu64 " x avg %.3f us = %.3f ms (min %.3f us, max %.3f us)", n->count,
			ms(n->total) * 1e3 / (double)n->count, ms(n->total), ms(n->min) * 1e3, ms(n->max) * 1e3);
	else
		fprintf(f, "%s  %.3f ms%s", n->kind == K_REQUEST ? " (request)" : "", ms(n->end - n->t),
			n->ended ? "" : " (unfinished)");
	for (uint32_t i = 0; i < n->nmeta; i++) {
		fprintf(f, i ? ", %s=" : "  {%s=", n->meta[i].key);
		if (n->meta[i].is_str)
			fputs(n->meta[i].s, f);
		else
			fprintf(f, "%" PRId64, n->meta[i].i);
		if (i + 1 == n->nmeta)
			fputc('}', f);
	}
	/* the request's blocking calls made inside this span */
	for (const struct node *r = n; r; r = r->parent) {
		if (r->kind != K_REQUEST)
			continue;
		for (uint32_t i = 0; i < r->nblocks; i++) {
			const struct blocking *b = &r->blocks[i];
			if (b->span == n->id || (n == r && !find(tr->spans, b->span)))
				fprintf(f, "  [blocking %s %.1f ms]", b->call, ms(b->dur_ns));
		}
		break;
	}
	fputc('\n', f);
	for (const struct node *c = n->first; c; c = c->next)
		text_node(f, tr, c, depth + 1, lines);
}

static void text_requests(FILE *f, const struct trace *tr)
{
	const struct span_model *m = tr->spans;
	struct node **v = calloc(m->nkept ? m->nkept : 1, sizeof(*v));
	size_t n = 0;
	if (!v)
		return;
	for (size_t i = 0; i < m->nkept; i++)
		if (m->kept[i]->kind == K_REQUEST)
			v[n++] = m->kept[i];
	if (!m->requests) {
		free(v);
		return;
	}
	qsort(v, n, sizeof(*v), by_duration);
	const struct hist *h = &m->req_h;
	fprintf(f, "\nrequests: %" PRIu64 ", %" PRIu64 " ended: duration ms p50 / p95 / max %.3f / %.3f / %.3f\n",
		m->requests, h->count, ms(hist_percentile(h, 50)), ms(hist_percentile(h, 95)), ms(h->max));
	if (n < m->requests)
		fprintf(f, "  (%zu kept in detail)\n", n);
	fprintf(f, "  %-24s %-8s %10s %12s %9s  %s\n", "id", "tid", "at ms", "duration ms", "lag ms", "blocking calls");
	for (size_t i = 0; i < n && i < TEXT_TOP; i++) {
		uint64_t blocked = 0;
		for (uint32_t j = 0; j < v[i]->nblocks; j++)
			blocked += v[i]->blocks[j].dur_ns;
		fprintf(f, "  %-24s %-8" PRId64 " %10.1f %12.3f %9.3f  %u (%.1f ms)\n", v[i]->name, v[i]->tid,
			ms(v[i]->t), ms(v[i]->end - v[i]->t), ms(v[i]->lag), v[i]->nblocks, ms(blocked));
	}
	if (n > TEXT_TOP)
		fprintf(f, "  ... %zu more\n", n - TEXT_TOP);
	for (size_t i = 0; i < n && i < 3; i++) {
		int lines = 0;
		fprintf(f, "  spans of %s:\n", v[i]->name);
		text_node(f, tr, v[i], 0, &lines);
	}
	free(v);
}

static void text_spans(FILE *f, const struct trace *tr)
{
	const struct span_model *m = tr->spans;
	struct name_list l;
	names_sorted(m, &l);
	if (l.n) {
		fprintf(f, "\nspans by name (total time):\n  %8s %11s %10s %10s %10s  %s\n", "count", "total ms", "p50 ms",
			"p95 ms", "max ms", "name");
		for (size_t i = 0; i < l.n && i < 20; i++) {
			const struct name_stat *s = l.v[i];
			fprintf(f, "  %8" PRIu64 " %11.3f %10.3f %10.3f %10.3f  %s\n", s->h.count, ms(s->h.sum),
				ms(hist_percentile(&s->h, 50)), ms(hist_percentile(&s->h, 95)), ms(s->h.max), s->name);
		}
	}
	free(l.v);
	if (m->ncums) {
		fprintf(f, "\ncumulative spans (one entry per parent span):\n  %8s %10s %11s %10s %10s %10s  %s\n",
			"entries", "count", "total ms", "min us", "avg us", "max us", "name (under)");
		for (size_t i = 0; i < m->ncums && i < 20; i++) {
			const struct cum_stat *c = &m->cums[i];
			fprintf(f, "  %8" PRIu64 " %10" PRIu64 " %11.3f %10.3f %10.3f %10.3f  %s (%s)\n", c->entries,
				c->count, ms(c->total), ms(c->min) * 1e3, ms(c->total) * 1e3 / (double)c->count,
				ms(c->max) * 1e3, c->name, c->parent[0] ? c->parent : "no span");
		}
	}
	/* the first tree of each root name, up to a few */
	const char *seen[8];
	size_t shown = 0;
	for (size_t i = 0; i < m->nkept && shown < 8; i++) {
		const struct node *n = m->kept[i];
		size_t j = 0;
		if (n->parent || n->kind == K_REQUEST)
			continue;
		while (j < shown && strcmp(seen[j], n->name))
			j++;
		if (j < shown)
			continue;
		seen[shown++] = n->name;
		if (shown == 1)
			fputs("\nspan trees outside requests (the first of each name):\n", f);
		int lines = 0;
		text_node(f, tr, n, 0, &lines);
	}
}

static void text_self(FILE *f, const struct trace *tr)
{
	const struct span_model *m = tr->spans;
	if (m->nctl) {
		fputs("\nrecording control (asyncshim ctl):", f);
		for (size_t i = 0; i < m->nctl && i < 20; i++)
			fprintf(f, "%s %s at %.1f ms", i ? "," : "", m->ctl[i].cmd, ms(m->ctl[i].t));
		fputs(m->nctl > 20 ? ", ...\n" : "\n", f);
	}
	if (m->have_flight)
		fprintf(f, "\nflight recorder: written on %s at %.1f ms; window %" PRIu64 " MiB, %.1f MiB of older events "
			   "not kept\n",
			!strcmp(m->trigger, "block") ? "a blocking call" : !strcmp(m->trigger, "stall") ? "a stall"
									     : m->trigger,
			ms(m->flight_t), m->flight_mb, (double)m->dropped_bytes / 1048576.0);
	if (m->have_overhead) {
		uint64_t busy = loop_busy(tr);
		fprintf(f, "\nshim overhead (estimated): %.3f ms on loop threads", ms(m->ov_loop));
		if (busy)
			fprintf(f, " = %.2f%% of loop busy time", 100.0 * (double)m->ov_loop / (double)busy);
		fprintf(f, "\n  (%" PRIu64 " timed calls x %.0f ns, %" PRIu64 " records x %.0f ns, %" PRIu64
			   " stacks %.3f ms, stall sampling %.3f ms, %" PRIu64 " cumulative span runs x %.0f ns,"
			   " bindings %.3f ms); collector thread %.1f ms CPU\n",
			m->ov_calls, m->ov_call_ns, m->ov_records, m->ov_record_ns, m->ov_stacks, ms(m->ov_stacks_ns),
			ms(m->ov_sampling), m->ov_cum_runs, m->ov_cum_ns, ms(m->ov_binding), ms(m->ov_cpu));
	}
}

void spans_text(FILE *f, const struct trace *tr)
{
	if (!tr->spans)
		return;
	text_requests(f, tr);
	text_spans(f, tr);
	text_self(f, tr);
}

/* ---- for exports ---- */

size_t spans_count(const struct trace *tr)
{
	return tr->spans ? tr->spans->nkept : 0;
}

int spans_get(const struct trace *tr, size_t i, struct span_view *v)
{
	if (!tr->spans || i >= tr->spans->nkept)
		return -1;
	const struct node *n = tr->spans->kept[i];
	v->id = n->id;
	v->parent = n->parent ? n->parent->id : 0;
	v->tid = n->tid;
	v->name = n->name;
	v->request = n->kind == K_REQUEST;
	v->cumulative = n->kind == K_CUMULATIVE;
	v->unfinished = !n->ended;
	v->t_ns = n->t;
	v->dur_ns = n->kind == K_CUMULATIVE ? n->total : n->end - n->t;
	v->count = n->count;
	return 0;
}
