/* html.c — `asyncshim report --html FILE`: see html.h.
 *
 * The summary comes from the loaded model (struct trace).  The timeline
 * needs the iterations themselves, which the model does not keep, so each
 * trace is streamed once more here: a loop thread with few iterations keeps
 * them all; a longer one is folded into time buckets (count, busy time,
 * longest iteration) plus its slowest iterations, so the page stays the same
 * size and speed for a thousand or a billion iterations.  Budgets are per
 * trace, so many loop threads do not multiply the page either. */
#include "html.h"
#include "outfile.h"
#include "findings.h"
#include "sites.h"
#include "tasks.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "html_template.h"      /* generated from tools/html_template.html */

#define EXACT_MAX 60000          /* iterations a thread may have and be drawn one by one, */
#define EXACT_TOTAL 200000       /* ... as long as the trace's exact threads stay under this */
#define BUCKETS_TOTAL 65536      /* time buckets shared by the other threads, */
#define BUCKETS_MIN 1024         /* ... at least this many */
#define BUCKETS_MAX 16384        /* ... and at most this many each */
#define SLOW_MAX 20000           /* slowest iterations kept individually per bucketed thread */
#define BLOCKS_MAX HTML_BLOCKS_KEPT /* blocking calls drawn individually per trace (the longest) */
#define SITES_MAX 100            /* blocking call sites in the table */
#define TASK_RUNS_MAX 50000      /* task runs (the longest) and task ends drawn per trace */
#define STALLS_MAX 20000         /* stalls drawn per trace (the longest) */
#define TREE_NODES 2000          /* task tree nodes in the page (the report's JSON has more) */
#define LABEL_MAX 200
#define LAG_LO_NS 1000           /* lag histogram: bin 0 is below 1 µs, */
#define LAG_PER_DECADE 10        /* then 10 bins per decade ... */
#define LAG_BINS (1 + 8 * LAG_PER_DECADE)    /* ... up to 100 s and over */
#define DATA_MARK "<!--ASYNCSHIM-DATA-->"

/* The longest of many spans, in bounded memory: entries of WIDTH fields,
 * field DUR their length.  When full, the bar doubles and what falls under
 * it goes, so what stays is the longest, in the order offered. */
struct longest {
	uint64_t *v;
	size_t n, cap, width, dur;
	uint64_t min;                /* shorter entries are not kept */
	uint64_t offered;
};

struct tl_thread {
	int64_t tid;
	int exact;
	size_t nbuckets;
	uint64_t *iters;             /* exact: start, duration pairs */
	size_t niters, cap_iters;
	uint64_t width_ns;           /* buckets */
	uint32_t *count;
	uint64_t *busy, *max;
	struct longest slow;         /* slowest iterations: start, duration */
};

struct tl {
	struct tl_thread *th;
	size_t nth;
	uint64_t span_ns;
	uint64_t lag_bins[LAG_BINS];
	struct longest runs;         /* task runs: tid, start, duration, task id, finished */
	struct longest ends;         /* task ends other than completed: tid, time, task id, status 2 cancelled 3 failed */
	struct longest stalls;       /* tid, start, stall time, iteration, first sample's stack */
	uint64_t stall_ns;           /* all stalls */
	uint64_t sampling_ns;        /* stall samplers' cost, from stall records */
	int has_sampling;
	uint64_t overhead[4];        /* the last overhead record's (cumulative) figures */
	int has_overhead;
};

/* the overhead record's figures the page shows (docs/trace-format.md) */
static const enum as_trace_key overhead_keys[] = { AS_K_loop_ns, AS_K_loop_busy_ns, AS_K_collector_cpu_ns, AS_K_calls };

struct site {
	char call[32], fd_kind[16], label[LABEL_MAX];
	uint64_t stack;              /* a stack of the site, for its frames */
	uint64_t count, total_ns, max_ns;
	size_t final;                /* index after merging and ranking */
};

/* ---- writing JSON into the page ---- */

/* JSON string that is also safe inside <script>: no "<", ">" or "&" */
static void hstr(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c == 0x7f || c == '<' || c == '>' || c == '&')
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void lag_json(FILE *f, const struct hist *h)
{
	fprintf(f, "{\"count\":%" PRIu64 ",\"min\":%" PRIu64 ",\"avg\":%" PRIu64 ",\"p50\":%" PRIu64
		   ",\"p95\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64 "}",
		h->count, h->count ? h->min : 0, h->count ? h->sum / h->count : 0, hist_percentile(h, 50),
		hist_percentile(h, 95), hist_percentile(h, 99), h->max);
}

static void u64_array(FILE *f, const uint64_t *v, size_t n)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, i ? ",%" PRIu64 : "%" PRIu64, v[i]);
	fputc(']', f);
}

/* start, duration pairs as the trace has them: gap from the previous start */
static void pairs_json(FILE *f, const uint64_t *v, size_t npairs)
{
	uint64_t prev = 0;
	fputc('[', f);
	for (size_t i = 0; i < npairs; i++) {
		fprintf(f, "%s%" PRIu64 ",%" PRIu64, i ? "," : "", v[2 * i] - prev, v[2 * i + 1]);
		prev = v[2 * i];
	}
	fputc(']', f);
}

/* ---- the timeline pass ---- */

static unsigned lag_bin(uint64_t ns)
{
	if (ns < LAG_LO_NS)
		return 0;
	int b = 1 + (int)floor(log10((double)ns / LAG_LO_NS) * LAG_PER_DECADE);
	return b >= LAG_BINS ? LAG_BINS - 1 : (unsigned)b;
}

static int longest_init(struct longest *k, size_t cap, size_t width, size_t dur, uint64_t min)
{
	memset(k, 0, sizeof(*k));
	k->cap = cap;
	k->width = width;
	k->dur = dur;
	k->min = min;
	k->v = malloc(cap * width * sizeof(*k->v));
	return k->v ? 0 : -1;
}

static void longest_add(struct longest *k, const uint64_t *e)
{
	uint64_t len = k->dur < k->width ? e[k->dur] : 0;
	k->offered++;
	if (len < k->min)
		return;
	while (k->n == k->cap) {
		size_t out = 0;
		if (k->dur >= k->width)
			return;      /* no length: the first ones stay */
		k->min = k->min ? k->min * 2 : 1000;
		for (size_t i = 0; i < k->n; i++)
			if (k->v[i * k->width + k->dur] >= k->min)
				memmove(&k->v[out++ * k->width], &k->v[i * k->width], k->width * sizeof(*k->v));
		k->n = out;
		if (len < k->min)
			return;
	}
	memcpy(&k->v[k->n++ * k->width], e, k->width * sizeof(*k->v));
}

static int buckets_init(struct tl_thread *th, uint64_t span_ns, size_t n, uint64_t block_ms)
{
	th->nbuckets = n;
	th->width_ns = span_ns / n + 1;
	th->count = calloc(n, sizeof(*th->count));
	th->busy = calloc(n, sizeof(*th->busy));
	th->max = calloc(n, sizeof(*th->max));
	if (!th->count || !th->busy || !th->max)
		return -1;
	return longest_init(&th->slow, SLOW_MAX, 2, 1, block_ms ? block_ms * 1000000 : 1000000);
}

static int tl_init(struct tl *tl, const struct trace *tr)
{
	uint64_t exact = 0;
	size_t bucketed = 0;
	memset(tl, 0, sizeof(*tl));
	tl->span_ns = tr->duration_ns ? tr->duration_ns : 1;
	tl->th = calloc(tr->nthreads ? tr->nthreads : 1, sizeof(*tl->th));
	if (!tl->th)
		return -1;
	for (size_t i = 0; i < tr->nthreads; i++) {
		const struct thread_info *t = &tr->threads[i];
		if (!t->iterations)
			continue;
		struct tl_thread *th = &tl->th[tl->nth++];
		th->tid = t->tid;
		th->exact = t->iterations <= EXACT_MAX && exact + t->iterations <= EXACT_TOTAL;
		exact += th->exact ? t->iterations : 0;
		bucketed += !th->exact;
	}
	size_t n = bucketed ? BUCKETS_TOTAL / bucketed : 0;
	n = n < BUCKETS_MIN ? BUCKETS_MIN : n > BUCKETS_MAX ? BUCKETS_MAX : n;
	for (size_t i = 0; i < tl->nth; i++)
		if (!tl->th[i].exact && buckets_init(&tl->th[i], tl->span_ns, n, tr->block_ms) != 0)
			return -1;
	if (longest_init(&tl->runs, TASK_RUNS_MAX, 5, 2, 0) != 0 || longest_init(&tl->ends, TASK_RUNS_MAX, 4, 4, 0) != 0 ||
	    longest_init(&tl->stalls, STALLS_MAX, 6, 2, 0) != 0)
		return -1;
	return 0;
}

static void tl_free(struct tl *tl)
{
	for (size_t i = 0; i < tl->nth; i++) {
		struct tl_thread *th = &tl->th[i];
		free(th->iters);
		free(th->count);
		free(th->busy);
		free(th->max);
		free(th->slow.v);
	}
	free(tl->th);
	free(tl->runs.v);
	free(tl->ends.v);
	free(tl->stalls.v);
}

static int push_pair(uint64_t **v, size_t *n, size_t *cap, uint64_t a, uint64_t b)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 256;
		uint64_t *p = realloc(*v, 2 * c * sizeof(*p));
		if (!p)
			return -1;
		*v = p;
		*cap = c;
	}
	(*v)[2 * *n] = a;
	(*v)[2 * *n + 1] = b;
	(*n)++;
	return 0;
}

static void add_to_buckets(struct tl_thread *th, uint64_t start, uint64_t dur)
{
	uint64_t w = th->width_ns, end = start + dur;
	uint64_t b0 = start / w, b1 = (end ? end - 1 : 0) / w;
	if (b0 >= th->nbuckets)
		b0 = th->nbuckets - 1;
	if (b1 >= th->nbuckets)
		b1 = th->nbuckets - 1;
	th->count[b0]++;
	for (uint64_t b = b0; b <= b1; b++) {
		uint64_t lo = b * w > start ? b * w : start, hi = (b + 1) * w < end ? (b + 1) * w : end;
		if (hi > lo)
			th->busy[b] += hi - lo;
		if (dur > th->max[b])
			th->max[b] = dur;
	}
	if (dur >= th->slow.min) {
		uint64_t e[2] = { start, dur };
		longest_add(&th->slow, e);
	}
}

static int tl_iters(struct tl *tl, const msgpack_object *o, char *err, size_t errlen)
{
	int64_t tid;
	uint64_t start;
	const msgpack_object *d = mp_get(o, AS_K_d);
	/* the model's pass has validated every iters record */
	if (mp_i64(o, AS_K_tid, &tid) != 0 || mp_u64(o, AS_K_t0, &start) != 0 || !d || d->type != MSGPACK_OBJECT_ARRAY)
		return 0;
	struct tl_thread *th = NULL;
	for (size_t i = 0; i < tl->nth && !th; i++)
		if (tl->th[i].tid == tid)
			th = &tl->th[i];
	if (!th)
		return 0;   /* appended after the model's pass */
	for (uint32_t i = 0; i + 1 < d->via.array.size; i += 2) {
		uint64_t dur = d->via.array.ptr[i + 1].via.u64;
		start += d->via.array.ptr[i].via.u64;
		tl->lag_bins[lag_bin(dur)]++;
		if (!th->exact)
			add_to_buckets(th, start, dur);
		else if (push_pair(&th->iters, &th->niters, &th->cap_iters, start, dur) != 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	return 0;
}

/* task_runs: d = [id, gap, duration, finished] per run */
static void tl_task_runs(struct tl *tl, const msgpack_object *o)
{
	int64_t tid;
	uint64_t start;
	const msgpack_object *d = mp_get(o, AS_K_d);
	if (mp_i64(o, AS_K_tid, &tid) != 0 || mp_u64(o, AS_K_t0, &start) != 0 || !d || d->type != MSGPACK_OBJECT_ARRAY)
		return;
	for (uint32_t i = 0; i + 3 < d->via.array.size; i += 4) {
		const msgpack_object *v = &d->via.array.ptr[i];
		start += v[1].via.u64;
		uint64_t e[5] = { (uint64_t)tid, start, v[2].via.u64, v[0].via.u64, v[3].via.u64 };
		longest_add(&tl->runs, e);
	}
}

static void tl_task_end(struct tl *tl, const msgpack_object *o)
{
	int64_t tid = 0;
	uint64_t t, id;
	char status[16] = "";
	mp_i64(o, AS_K_tid, &tid);
	if (mp_u64(o, AS_K_t, &t) != 0 || mp_u64(o, AS_K_id, &id) != 0)
		return;
	mp_str(o, AS_K_status, status, sizeof(status));
	/* the page takes a finished run's task as completed unless told otherwise */
	if (!strcmp(status, "completed"))
		return;
	uint64_t e[4] = { (uint64_t)tid, t, id, !strcmp(status, "cancelled") ? 2 : 3 };
	longest_add(&tl->ends, e);
}

/* stall: tid, t, dur (busy without a blocking call), samples = [stack ids] */
static void tl_stall(struct tl *tl, const msgpack_object *o)
{
	int64_t tid;
	uint64_t t, dur, iteration = 0, stack = 0, sampling;
	if (mp_i64(o, AS_K_tid, &tid) != 0 || mp_u64(o, AS_K_t, &t) != 0 || mp_u64(o, AS_K_dur, &dur) != 0)
		return;
	mp_u64(o, AS_K_iteration, &iteration);
	if (mp_u64(o, AS_K_sampling_ns, &sampling) == 0) {
		tl->sampling_ns += sampling;
		tl->has_sampling = 1;
	}
	const msgpack_object *samples = mp_get(o, AS_K_samples);
	if (samples && samples->type == MSGPACK_OBJECT_ARRAY && samples->via.array.size &&
	    samples->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		stack = samples->via.array.ptr[0].via.u64;
	/* cause: 0 not known, 1 cpu, 2 preempted (its samples blame no frame), 3 off_cpu */
	char cause[12] = "";
	mp_str(o, AS_K_cause, cause, sizeof(cause));
	uint64_t c = !strcmp(cause, "cpu") ? 1 : !strcmp(cause, "preempted") ? 2 : !strcmp(cause, "off_cpu") ? 3 : 0;
	if (c == 2)
		stack = 0;
	uint64_t e[6] = { (uint64_t)tid, t, dur, iteration, stack, c };
	tl->stall_ns += dur;
	longest_add(&tl->stalls, e);
}

/* overhead: cumulative, so the last one counts */
static void tl_overhead(struct tl *tl, const msgpack_object *o)
{
	for (size_t i = 0; i < 4; i++)
		if (mp_u64(o, overhead_keys[i], &tl->overhead[i]) != 0)
			tl->overhead[i] = 0;
	tl->has_overhead = 1;
}

static int tl_visit(const msgpack_object *o, uint64_t index, void *ctx, char *err, size_t errlen)
{
	struct tl *tl = ctx;
	char type[32] = "";
	mp_str(o, AS_K_type, type, sizeof(type));
	if (index == 0)
		return 0;
	if (!strcmp(type, AS_TYPE(iters)))
		return tl_iters(tl, o, err, errlen);
	if (!strcmp(type, AS_TYPE(task_runs)))
		tl_task_runs(tl, o);
	else if (!strcmp(type, AS_TYPE(task_end)))
		tl_task_end(tl, o);
	else if (!strcmp(type, AS_TYPE(stall)))
		tl_stall(tl, o);
	else if (!strcmp(type, AS_TYPE(overhead)))
		tl_overhead(tl, o);
	return 0;
}

static void timeline_json(FILE *f, const struct tl *tl)
{
	fputc('[', f);
	for (size_t i = 0; i < tl->nth; i++) {
		const struct tl_thread *th = &tl->th[i];
		fprintf(f, "%s{\"tid\":%" PRId64 ",", i ? "," : "", th->tid);
		if (th->exact) {
			fputs("\"mode\":\"exact\",\"iters\":", f);
			pairs_json(f, th->iters, th->niters);
			fputc('}', f);
			continue;
		}
		fprintf(f, "\"mode\":\"buckets\",\"width_ns\":%" PRIu64 ",\"count\":[", th->width_ns);
		for (size_t b = 0; b < th->nbuckets; b++)
			fprintf(f, b ? ",%" PRIu32 : "%" PRIu32, th->count[b]);
		/* busy time in thousandths of the bucket: small numbers, enough to draw */
		fputs("],\"busy\":[", f);
		for (size_t b = 0; b < th->nbuckets; b++)
			fprintf(f, b ? ",%" PRIu64 : "%" PRIu64, (th->busy[b] * 1000 + th->width_ns / 2) / th->width_ns);
		fputs("],\"max\":", f);
		u64_array(f, th->max, th->nbuckets);
		/* pairs in time order, as the page searches them */
		fprintf(f, ",\"slow_min_ns\":%" PRIu64 ",\"slow\":", th->slow.min);
		pairs_json(f, th->slow.v, th->slow.n);
		fputc('}', f);
	}
	fputc(']', f);
}

/* ---- blocking call sites ---- */

static const struct trace *sort_tr;
static struct block_site *const *sort_raw;
static const struct site *sort_sites;

static int by_raw_site(const void *a, const void *b)
{
	return block_site_cmp(sort_raw[*(const size_t *)a], sort_raw[*(const size_t *)b]);
}

static int by_site_key(const void *a, const void *b)
{
	const struct site *x = &sort_sites[*(const size_t *)a], *y = &sort_sites[*(const size_t *)b];
	int c;
	if ((c = strcmp(x->call, y->call)) || (c = strcmp(x->label, y->label)))
		return c;
	return strcmp(x->fd_kind, y->fd_kind);
}

static int by_total(const void *a, const void *b)
{
	const struct site *x = a, *y = b;
	if (x->total_ns != y->total_ns)
		return x->total_ns > y->total_ns ? -1 : 1;
	return x->count > y->count ? -1 : x->count < y->count;
}

static int by_duration(const void *a, const void *b)
{
	const struct blocking *x = &sort_tr->blocks[*(const size_t *)a], *y = &sort_tr->blocks[*(const size_t *)b];
	if (x->dur_ns != y->dur_ns)
		return x->dur_ns > y->dur_ns ? -1 : 1;
	return x->t_ns < y->t_ns ? -1 : x->t_ns > y->t_ns;
}

struct sites {
	struct site *raw, *merged;
	size_t nraw, nmerged;
	size_t *site_of;             /* findings' site (block_site.index) -> merged site */
};

static void sites_free(struct sites *s)
{
	free(s->raw);
	free(s->merged);
	free(s->site_of);
}

/* Group blocking calls by call, fd kind and call site (the stack's own
 * frames, so stacks that differ only below main are one site), largest
 * total time first, from the sums findings.c keeps per stack, call and fd
 * kind (every call counts, also those not kept one by one). */
static int sites_build(struct trace *tr, struct sites *s)
{
	struct block_site *const *bs;
	size_t n = trace_block_sites(tr, &bs);
	size_t *idx = malloc((n ? n : 1) * sizeof(*idx)), *raw_of = malloc((n ? n : 1) * sizeof(*raw_of));
	memset(s, 0, sizeof(*s));
	s->raw = calloc(n ? n : 1, sizeof(*s->raw));
	s->site_of = malloc((n ? n : 1) * sizeof(*s->site_of));
	if (!idx || !raw_of || !s->raw || !s->site_of) {
		free(idx);
		free(raw_of);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	sort_raw = bs;
	qsort(idx, n, sizeof(*idx), by_raw_site);
	for (size_t i = 0; i < n; i++) {
		const struct block_site *b = bs[idx[i]];
		struct site *r = &s->raw[s->nraw++];
		struct site_stack st;
		snprintf(r->call, sizeof(r->call), "%s", b->call);
		snprintf(r->fd_kind, sizeof(r->fd_kind), "%s", b->fd_kind);
		r->stack = b->stack;
		site_stack(tr, b->stack, &st);
		site_label(&st, r->label, sizeof(r->label));
		r->count = b->count;
		r->total_ns = b->total_ns;
		r->max_ns = b->max_ns;
		raw_of[b->index] = s->nraw - 1;
	}
	/* merge raw sites with the same key */
	s->merged = calloc(s->nraw ? s->nraw : 1, sizeof(*s->merged));
	if (!s->merged) {
		free(idx);
		free(raw_of);
		return -1;
	}
	for (size_t i = 0; i < s->nraw; i++)
		idx[i] = i;
	sort_sites = s->raw;
	qsort(idx, s->nraw, sizeof(*idx), by_site_key);
	for (size_t i = 0; i < s->nraw; i++) {
		struct site *r = &s->raw[idx[i]];
		if (!i || by_site_key(&idx[i - 1], &idx[i]) != 0) {
			s->merged[s->nmerged] = *r;
			s->merged[s->nmerged].count = s->merged[s->nmerged].total_ns = s->merged[s->nmerged].max_ns = 0;
			s->nmerged++;
		}
		struct site *m = &s->merged[s->nmerged - 1];
		m->count += r->count;
		m->total_ns += r->total_ns;
		if (r->max_ns > m->max_ns)
			m->max_ns = r->max_ns;
		r->final = s->nmerged - 1;
	}
	/* rank; remember where each merged site went */
	for (size_t i = 0; i < s->nmerged; i++)
		s->merged[i].final = i;
	qsort(s->merged, s->nmerged, sizeof(*s->merged), by_total);
	size_t *rank = idx;   /* reused: merged site before ranking -> rank */
	for (size_t i = 0; i < s->nmerged; i++)
		rank[s->merged[i].final] = i;
	for (size_t i = 0; i < n; i++)
		s->site_of[i] = rank[s->raw[raw_of[i]].final];
	free(idx);
	free(raw_of);
	return 0;
}

/* a site's frames as JSON strings, "function file:line" each */
static void frames_json(FILE *f, const struct site_stack *st)
{
	for (size_t k = 0; k < st->n; k++) {
		char text[1024];
		site_frame_text(&st->frames[k], text, sizeof(text));
		if (k)
			fputc(',', f);
		hstr(f, text);
	}
}

static void sites_json(FILE *f, struct trace *tr, const struct sites *s)
{
	fputc('[', f);
	for (size_t i = 0; i < s->nmerged && i < SITES_MAX; i++) {
		const struct site *m = &s->merged[i];
		struct site_stack st;
		site_stack(tr, m->stack, &st);
		fputs(i ? ",{\"call\":" : "{\"call\":", f);
		hstr(f, m->call);
		fputs(",\"fd_kind\":", f);
		hstr(f, m->fd_kind[0] ? m->fd_kind : NULL);
		fputs(",\"label\":", f);
		hstr(f, m->label);
		fprintf(f, ",\"count\":%" PRIu64 ",\"total_ns\":%" PRIu64 ",\"max_ns\":%" PRIu64 ",\"frames\":[",
			m->count, m->total_ns, m->max_ns);
		frames_json(f, &st);
		fputs("]}", f);
	}
	fputc(']', f);
}

/* the longest BLOCKS_MAX blocking calls: tid, start, duration, site */
static int blocks_json(FILE *f, const struct trace *tr, const struct sites *s)
{
	size_t n = tr->nblocks, shown = n < BLOCKS_MAX ? n : BLOCKS_MAX;
	size_t *idx = malloc((n ? n : 1) * sizeof(*idx));
	if (!idx)
		return -1;
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	sort_tr = tr;
	if (tr->blocks_total > BLOCKS_MAX)     /* only the longest are kept: longest first */
		qsort(idx, n, sizeof(*idx), by_duration);
	fputc('[', f);
	for (size_t i = 0; i < shown; i++) {
		const struct blocking *b = &tr->blocks[idx[i]];
		const struct block_site *raw = trace_block_site_of(tr, b);
		size_t site = raw ? s->site_of[raw->index] : SIZE_MAX;
		fprintf(f, "%s[%" PRId64 ",%" PRIu64 ",%" PRIu64 ",%ld]", i ? "," : "", b->tid, b->t_ns, b->dur_ns,
			site < SITES_MAX ? (long)site : -1L);
	}
	fputc(']', f);
	free(idx);
	return 0;
}

/* ---- tasks and stalls ---- */

static void longest_json(FILE *f, const struct longest *k)
{
	fprintf(f, "{\"offered\":%" PRIu64 ",\"min_ns\":%" PRIu64 ",\"v\":[", k->offered, k->min);
	for (size_t i = 0; i < k->n; i++) {
		fputs(i ? ",[" : "[", f);
		for (size_t j = 0; j < k->width; j++)
			fprintf(f, j ? ",%" PRIu64 : "%" PRIu64, k->v[i * k->width + j]);
		fputc(']', f);
	}
	fputs("]}", f);
}

static int cmp_run(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;         /* tid, start first */
	if (x[0] != y[0])
		return (int64_t)x[0] < (int64_t)y[0] ? -1 : 1;
	return x[1] < y[1] ? -1 : x[1] > y[1];
}

/* Task runs by thread, in time order, delta coded like the trace:
 * {"offered","min_ns","threads":[{"tid","runs":[gap, duration, id, finished, ...]}]} */
static void runs_json(FILE *f, struct longest *k)
{
	if (k->n)
		qsort(k->v, k->n, k->width * sizeof(*k->v), cmp_run);
	fprintf(f, "{\"offered\":%" PRIu64 ",\"min_ns\":%" PRIu64 ",\"threads\":[", k->offered, k->min);
	uint64_t prev = 0;
	for (size_t i = 0; i < k->n; i++) {
		const uint64_t *e = &k->v[i * k->width];
		int first = !i || k->v[(i - 1) * k->width] != e[0];
		if (first) {
			fprintf(f, "%s{\"tid\":%" PRId64 ",\"runs\":[", i ? "]}," : "", (int64_t)e[0]);
			prev = e[1];
		}
		fprintf(f, "%s%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64, first ? "" : ",", e[1] - prev, e[2], e[3], e[4]);
		prev = e[1];
	}
	fputs(k->n ? "]}]}" : "]}", f);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Stalls with the call site of their first sample: stalls.v rows end in an
 * index into stall_stacks (-1: none). */
static void stalls_json(FILE *f, struct trace *tr, const struct tl *tl)
{
	const struct longest *k = &tl->stalls;
	uint64_t *ids = malloc((k->n ? k->n : 1) * sizeof(*ids));
	size_t nids = 0;
	for (size_t i = 0; ids && i < k->n; i++)
		if (k->v[i * k->width + 4])
			ids[nids++] = k->v[i * k->width + 4];
	if (ids)
		qsort(ids, nids, sizeof(*ids), cmp_u64);
	size_t u = 0;
	for (size_t i = 0; i < nids; i++)
		if (!u || ids[u - 1] != ids[i])
			ids[u++] = ids[i];
	nids = u < SITES_MAX ? u : SITES_MAX;
	fprintf(f, ",\"stalls\":{\"count\":%" PRIu64 ",\"total_ns\":%" PRIu64 ",\"min_ns\":%" PRIu64 ",\"v\":[",
		k->offered, tl->stall_ns, k->min);
	for (size_t i = 0; i < k->n; i++) {
		const uint64_t *e = &k->v[i * k->width];
		const uint64_t *hit = e[4] && nids ? bsearch(&e[4], ids, nids, sizeof(*ids), cmp_u64) : NULL;
		fprintf(f, "%s[%" PRId64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%ld,%" PRIu64 "]", i ? "," : "",
			(int64_t)e[0], e[1], e[2], e[3], hit ? (long)(hit - ids) : -1L, e[5]);
	}
	fputs("],\"stacks\":[", f);
	for (size_t i = 0; i < nids; i++) {
		struct site_stack st;
		char label[LABEL_MAX];
		site_stack(tr, ids[i], &st);
		site_label(&st, label, sizeof(label));
		fputs(i ? ",{\"label\":" : "{\"label\":", f);
		hstr(f, label);
		fputs(",\"frames\":[", f);
		frames_json(f, &st);
		fputs("]}", f);
	}
	fputs("]}", f);
	free(ids);
}

/* The task model's own JSON (counts, tree, await points, slow callbacks),
 * made safe inside <script>: "<", ">" and "&" only occur in its strings. */
static void tasks_section(FILE *f, const struct trace *tr)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m;
	if (!tr->tasks || !(m = open_memstream(&buf, &len)))
		return;
	tasks_json_tree(m, tr->tasks, TREE_NODES);
	if (fclose(m) == 0) {
		fputc(',', f);
		for (size_t i = 0; i < len; i++) {
			char c = buf[i];
			if (c == '<' || c == '>' || c == '&')
				fprintf(f, "\\u%04x", c);
			else
				fputc(c, f);
		}
	}
	free(buf);
}

/* ---- the page ---- */

static void threads_json(FILE *f, const struct trace *tr)
{
	fputc('[', f);
	for (size_t i = 0; i < tr->nthreads; i++) {
		const struct thread_info *t = &tr->threads[i];
		fprintf(f, "%s{\"tid\":%" PRId64 ",\"name\":", i ? "," : "", t->tid);
		hstr(f, t->name);
		fprintf(f, ",\"loop\":%s,\"exited\":%s,\"iterations\":%" PRIu64 ",\"busy_ns\":%" PRIu64
			   ",\"dropped\":%" PRIu64 ",\"lag\":",
			t->loop ? "true" : "false", t->exited ? "true" : "false", t->iterations, t->busy_ns,
			t->dropped);
		lag_json(f, &t->lag);
		fputc('}', f);
	}
	fputc(']', f);
}

static int trace_json(FILE *f, struct trace *tr, struct tl *tl, char *err, size_t errlen)
{
	struct sites s;
	uint64_t dropped = 0, blocked = 0;
	if (sites_build(tr, &s) != 0) {
		sites_free(&s);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < tr->nthreads; i++)
		dropped += tr->threads[i].dropped;
	blocked = tr->blocked_ns;
	fputs("{\"path\":", f);
	hstr(f, tr->path);
	fprintf(f, ",\"pid\":%" PRId64 ",\"start_unix_ns\":%" PRIu64 ",\"exe\":", tr->pid, tr->start_unix_ns);
	hstr(f, tr->exe);
	fprintf(f, ",\"duration_ns\":%" PRIu64 ",\"complete\":%s,\"end_reason\":", tr->duration_ns,
		tr->complete ? "true" : "false");
	hstr(f, tr->complete ? tr->end_reason : NULL);
	fprintf(f, ",\"block_ms\":%" PRIu64 ",\"dropped\":%" PRIu64 ",\"records\":%" PRIu64 ",\"threads\":",
		tr->block_ms, dropped, tr->records);
	threads_json(f, tr);
	fprintf(f, ",\"blocking\":{\"count\":%" PRIu64 ",\"total_ns\":%" PRIu64 ",\"sites\":%zu,\"shown\":%zu}",
		tr->blocks_total, blocked, s.nmerged, tr->nblocks < BLOCKS_MAX ? tr->nblocks : (size_t)BLOCKS_MAX);
	fputs(",\"sites\":", f);
	sites_json(f, tr, &s);
	fputs(",\"blocks\":", f);
	int rc = blocks_json(f, tr, &s);
	fprintf(f, ",\"lag_bins\":");
	u64_array(f, tl->lag_bins, LAG_BINS);
	fputs(",\"timeline\":", f);
	timeline_json(f, tl);
	fputs(",\"task_runs\":", f);
	runs_json(f, &tl->runs);
	fputs(",\"task_ends\":", f);
	longest_json(f, &tl->ends);
	stalls_json(f, tr, tl);
	if (tl->has_overhead) {
		fputs(",\"overhead\":{", f);
		for (size_t i = 0; i < 4; i++)
			fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "", as_trace_key_names[overhead_keys[i]], tl->overhead[i]);
		fputc('}', f);
	} else if (tl->has_sampling) {      /* older traces: the samplers' cost is all they say */
		fprintf(f, ",\"overhead\":{\"loop_ns\":%" PRIu64 "}", tl->sampling_ns);
	}
	tasks_section(f, tr);
	fputc('}', f);
	sites_free(&s);
	if (rc != 0)
		snprintf(err, errlen, "out of memory");
	return rc;
}

static void hist_merge(struct hist *into, const struct hist *h)
{
	if (!h->count || (!into->buckets && !(into->buckets = calloc(HIST_BUCKETS, sizeof(uint64_t)))))
		return;
	if (!into->count || h->min < into->min)
		into->min = h->min;
	if (h->max > into->max)
		into->max = h->max;
	into->count += h->count;
	into->sum += h->sum;
	for (size_t b = 0; b < HIST_BUCKETS; b++)
		into->buckets[b] += h->buckets[b];
}

static int write_data(FILE *f, struct trace *trs, int n, char *err, size_t errlen)
{
	struct hist all = { 0 };
	for (int i = 0; i < n; i++)
		for (size_t k = 0; k < trs[i].nthreads; k++)
			hist_merge(&all, &trs[i].threads[k].lag);
	fprintf(f, "{\"version\":1,\"limits\":{\"exact_max\":%d,\"buckets_max\":%d,\"slow_max\":%d,\"blocks_max\":%d,"
		   "\"sites_max\":%d},\"lag_hist\":{\"lo_ns\":%d,\"per_decade\":%d},\"lag\":",
		EXACT_MAX, BUCKETS_MAX, SLOW_MAX, BLOCKS_MAX, SITES_MAX, LAG_LO_NS, LAG_PER_DECADE);
	lag_json(f, &all);
	hist_free(&all);
	fputs(",\"traces\":[", f);
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		struct tl tl;
		char why[256];
		if (tl_init(&tl, &trs[i]) != 0) {
			snprintf(err, errlen, "out of memory");
			rc = -1;
		} else if (trace_pass(trs[i].src, tl_visit, &tl, why, sizeof(why)) != 0) {
			snprintf(err, errlen, "%s: %s", trs[i].path, why);
			rc = -1;
		} else {
			if (i)
				fputc(',', f);
			rc = trace_json(f, &trs[i], &tl, err, errlen);
		}
		tl_free(&tl);
	}
	fputs("]}", f);
	return rc;
}

int html_report(const char *path, struct trace *trs, int n, char *err, size_t errlen)
{
	const char *page = (const char *)html_template_html;
	size_t len = html_template_html_len;
	const char *mark = memmem(page, len, DATA_MARK, strlen(DATA_MARK));
	if (!mark) {
		snprintf(err, errlen, "this build's HTML template has no data mark");
		return -1;
	}
	struct outfile of;
	if (outfile_open(&of, path, err, errlen) != 0)
		return -1;
	FILE *f = of.f;
	fwrite(page, 1, (size_t)(mark - page), f);
	fputs("<script id=\"asyncshim-data\" type=\"application/json\">", f);
	int rc = write_data(f, trs, n, err, errlen);
	fputs("</script>", f);
	mark += strlen(DATA_MARK);
	fwrite(mark, 1, len - (size_t)(mark - page), f);
	/* a full disk shows in ferror() or the close, never as a cut page */
	char cerr[512];
	if (outfile_close(&of, rc == 0, cerr, sizeof(cerr)) != 0 && rc == 0) {
		snprintf(err, errlen, "%s", cerr);
		rc = -1;
	}
	return rc;
}
