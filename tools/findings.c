/* findings.c — blocking calls and stalls: exact totals and sums per site,
 * the longest ones one by one (findings.h).  Lookups use glibc's tsearch. */
#include "findings.h"
#include "spans.h"
#include "stacks.h"

#include <inttypes.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>

/* Stall samples are grouped by top frame in batches, not as they come:
 * symbolizing needs the module map, and a library loaded while the
 * collector drained may have its `module` record after a stack in it. */
#define PENDING_STALLS 4096
#define PENDING_SAMPLES 65536

struct pending {
	uint64_t seq, dur_ns;
	size_t first;                   /* in pend_ids */
	uint32_t n;
};

struct findings {
	void *bsite_tree;               /* struct block_site by (stack, call, fd kind) */
	struct block_site **bsites;
	size_t nbsites, cap_bsites;
	struct stall *stalls;           /* the longest, a heap until findings_finish */
	size_t nstalls, cap_stalls;
	void *share_tree;               /* struct stall_share by stack */
	struct stall_share **shares;
	size_t nshares, cap_shares;
	void *ssite_tree;               /* struct stall_site by key */
	struct stall_site **ssites;
	size_t nssites, cap_ssites;
	uint64_t unsampled_ns;
	struct pending *pend;
	size_t npend, cap_pend;
	uint64_t *pend_ids;
	size_t npend_ids, cap_pend_ids;
};

static struct findings *model(struct trace *tr)
{
	if (!tr->findings)
		tr->findings = calloc(1, sizeof(struct findings));
	return tr->findings;
}

/* ---- the longest ones: a heap whose root is the one to let go first ---- */

/* longer first, then earlier, then first recorded */
static int block_before(const void *a, const void *b)
{
	const struct blocking *x = a, *y = b;
	if (x->dur_ns != y->dur_ns)
		return x->dur_ns > y->dur_ns;
	if (x->t_ns != y->t_ns)
		return x->t_ns < y->t_ns;
	return x->seq < y->seq;
}

static int stall_before(const void *a, const void *b)
{
	const struct stall *x = a, *y = b;
	if (x->dur_ns != y->dur_ns)
		return x->dur_ns > y->dur_ns;
	if (x->t_ns != y->t_ns)
		return x->t_ns < y->t_ns;
	return x->seq < y->seq;
}

static void swap(char *a, char *b, size_t size)
{
	char t[size];
	memcpy(t, a, size);
	memcpy(a, b, size);
	memcpy(b, t, size);
}

static void sift_up(char *v, size_t i, size_t size, before_fn before)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!before(v + p * size, v + i * size))
			break;
		swap(v + p * size, v + i * size, size);
		i = p;
	}
}

static void sift_down(char *v, size_t n, size_t size, before_fn before)
{
	for (size_t i = 0;;) {
		size_t l = 2 * i + 1, w = i;
		if (l < n && before(v + w * size, v + l * size))
			w = l;
		if (l + 1 < n && before(v + w * size, v + (l + 1) * size))
			w = l + 1;
		if (w == i)
			return;
		swap(v + i * size, v + w * size, size);
		i = w;
	}
}

/* Offer ELEM to at most MAX kept (all of them, in order, for TRACE_KEEP_ALL).
 * 0: kept, nothing let go; 1: OUT holds the one let go (ELEM itself, or
 * the shortest kept, which ELEM replaced); -1: out of memory. */
int keep_offer(void **vp, size_t *n, size_t *cap, size_t max, size_t size, before_fn before,
		      const void *elem, void *out)
{
	char *v = *vp;
	if (*n < max) {
		if (!(v = trace_grow(v, cap, *n, size)))
			return -1;
		*vp = v;
		memcpy(v + *n * size, elem, size);
		if (max != TRACE_KEEP_ALL)
			sift_up(v, *n, size, before);
		(*n)++;
		return 0;
	}
	if (!max || !before(elem, v)) {
		memcpy(out, elem, size);
		return 1;
	}
	memcpy(out, v, size);
	memcpy(v, elem, size);
	sift_down(v, *n, size, before);
	return 1;
}

/* ---- blocking calls ---- */

int block_site_cmp(const void *a, const void *b)
{
	const struct block_site *x = a, *y = b;
	int c;
	if (x->stack != y->stack)
		return x->stack < y->stack ? -1 : 1;
	if ((c = strcmp(x->call, y->call)))
		return c;
	return strcmp(x->fd_kind, y->fd_kind);
}

static void bsite_key(struct block_site *k, const struct blocking *b)
{
	memset(k, 0, sizeof(*k));
	k->stack = b->stack;
	snprintf(k->call, sizeof(k->call), "%s", b->call);
	snprintf(k->fd_kind, sizeof(k->fd_kind), "%s", b->fd_kind);
}

static struct block_site *bsite_get(struct findings *f, const struct blocking *b)
{
	struct block_site key;
	bsite_key(&key, b);
	void **p = tfind(&key, &f->bsite_tree, block_site_cmp);
	if (p)
		return *p;
	struct block_site **v = trace_grow(f->bsites, &f->cap_bsites, f->nbsites, sizeof(*v));
	struct block_site *s = malloc(sizeof(*s));
	if (v)
		f->bsites = v;
	if (s) {
		*s = key;
		s->index = f->nbsites;
	}
	if (!v || !s || !tsearch(s, &f->bsite_tree, block_site_cmp)) {
		free(s);
		return NULL;
	}
	f->bsites[f->nbsites++] = s;
	return s;
}

int findings_block(struct trace *tr, const struct blocking *b)
{
	struct findings *f = model(tr);
	struct block_site *s = f ? bsite_get(f, b) : NULL;
	if (!s)
		return -1;
	tr->blocks_total++;
	tr->blocked_ns += b->dur_ns;
	if (!s->count++ || b->dur_ns > s->max_ns) {
		s->max_ns = b->dur_ns;
		s->max_first = b->seq;
	}
	if (b->dur_ns == s->max_ns)
		s->max_last = b->seq;
	s->total_ns += b->dur_ns;
	s->last = b->seq;
	spans_note_block(tr, b);
	struct blocking out;
	int r = keep_offer((void **)&tr->blocks, &tr->nblocks, &tr->cap_blocks, tr->keep, sizeof(*b), block_before, b,
			   &out);
	if (r < 0)
		return -1;
	/* a kept call keeps the names of its span and request */
	if (r == 0 || out.seq != b->seq)
		spans_hold(tr, b->span, b->request, 1);
	if (r == 1 && out.seq != b->seq)
		spans_hold(tr, out.span, out.request, -1);
	return 0;
}

/* ---- stalls ---- */

static int cmp_share(const void *a, const void *b)
{
	uint64_t x = ((const struct stall_share *)a)->stack, y = ((const struct stall_share *)b)->stack;
	return x < y ? -1 : x > y;
}

static int cmp_ssite(const void *a, const void *b)
{
	return strcmp(((const struct stall_site *)a)->key, ((const struct stall_site *)b)->key);
}

static struct stall_site *ssite_get(struct findings *f, const char *key)
{
	struct stall_site k = { .key = (char *)key };
	void **p = tfind(&k, &f->ssite_tree, cmp_ssite);
	if (p)
		return *p;
	struct stall_site **v = trace_grow(f->ssites, &f->cap_ssites, f->nssites, sizeof(*v));
	struct stall_site *s = calloc(1, sizeof(*s));
	if (v)
		f->ssites = v;
	if (!v || !s || !(s->key = strdup(key)) || !tsearch(s, &f->ssite_tree, cmp_ssite)) {
		if (s)
			free(s->key);
		free(s);
		return NULL;
	}
	s->last_stall = UINT64_MAX;
	f->ssites[f->nssites++] = s;
	return s;
}

static struct stall_share *share_get(const struct trace *tr, struct findings *f, uint64_t stack)
{
	struct stall_share k = { .stack = stack };
	void **p = tfind(&k, &f->share_tree, cmp_share);
	if (p)
		return *p;
	char key[1200];
	struct stall_share **v = trace_grow(f->shares, &f->cap_shares, f->nshares, sizeof(*v));
	struct stall_share *s = calloc(1, sizeof(*s));
	if (v)
		f->shares = v;
	if (!v || !s) {
		free(s);
		return NULL;
	}
	s->stack = stack;
	if (findings_top_key(tr, stack, key, sizeof(key), &s->top, &s->top_off) && !(s->site = ssite_get(f, key))) {
		free(s);
		return NULL;
	}
	if (!tsearch(s, &f->share_tree, cmp_share)) {
		free(s);
		return NULL;
	}
	f->shares[f->nshares++] = s;
	return s;
}

/* Group the pending stalls' samples by stack and top frame, in the order recorded. */
static int pend_flush(const struct trace *tr, struct findings *f)
{
	for (size_t i = 0; i < f->npend; i++) {
		const struct pending *p = &f->pend[i];
		if (!p->n)
			f->unsampled_ns += p->dur_ns;
		for (uint32_t j = 0; j < p->n; j++) {
			uint64_t id = f->pend_ids[p->first + j], share = p->dur_ns / p->n;
			struct stall_share *sh = share_get(tr, f, id);
			if (!sh)
				return -1;
			sh->samples++;
			sh->ns += share;
			struct stall_site *s = sh->site;
			if (!s)
				continue;
			if (!s->samples)
				s->stack = id;
			s->top = sh->top;
			s->top_off = sh->top_off;
			s->samples++;
			s->total_ns += share;
			if (s->last_stall != p->seq) {
				s->last_stall = p->seq;
				s->stalls++;
			}
		}
	}
	f->npend = f->npend_ids = 0;
	return 0;
}

static int pend_add(struct findings *f, const struct stall *s)
{
	struct pending *p = trace_grow(f->pend, &f->cap_pend, f->npend, sizeof(*p));
	if (!p)
		return -1;
	f->pend = p;
	while (f->cap_pend_ids < f->npend_ids + s->nsamples) {
		uint64_t *q = trace_grow(f->pend_ids, &f->cap_pend_ids, f->cap_pend_ids, sizeof(*q));
		if (!q)
			return -1;
		f->pend_ids = q;
	}
	if (s->nsamples)
		memcpy(f->pend_ids + f->npend_ids, s->samples, s->nsamples * sizeof(*s->samples));
	f->pend[f->npend++] = (struct pending){ s->seq, s->dur_ns, f->npend_ids, s->nsamples };
	f->npend_ids += s->nsamples;
	return 0;
}

int findings_stall(struct trace *tr, const msgpack_object *o, uint64_t seq, uint64_t *last_ns)
{
	struct findings *f = model(tr);
	struct stall s, out;
	if (!f || stacks_parse_stall(o, &s) != 0)
		return -1;
	s.seq = seq;
	*last_ns = s.t_ns + s.iter_ns;
	tr->stalls_total++;
	tr->stalled_ns += s.dur_ns;
	if (pend_add(f, &s) != 0 ||
	    ((f->npend >= PENDING_STALLS || f->npend_ids >= PENDING_SAMPLES) && pend_flush(tr, f) != 0)) {
		free(s.samples);
		return -1;
	}
	int r = keep_offer((void **)&f->stalls, &f->nstalls, &f->cap_stalls, tr->keep, sizeof(s), stall_before, &s,
			   &out);
	if (r < 0) {
		free(s.samples);
		return -1;
	}
	if (r == 0 || out.seq != s.seq)
		spans_hold(tr, s.span, s.request, 1);
	if (r == 1 && out.seq != s.seq)
		spans_hold(tr, out.span, out.request, -1);
	if (r == 1)
		free(out.samples);
	return 0;
}

/* ---- once loaded ---- */

static int block_by_seq(const void *a, const void *b)
{
	uint64_t x = ((const struct blocking *)a)->seq, y = ((const struct blocking *)b)->seq;
	return x < y ? -1 : x > y;
}

static int stall_by_seq(const void *a, const void *b)
{
	uint64_t x = ((const struct stall *)a)->seq, y = ((const struct stall *)b)->seq;
	return x < y ? -1 : x > y;
}

int findings_finish(struct trace *tr)
{
	struct findings *f = tr->findings;
	if (!f)
		return 0;
	if (tr->keep != TRACE_KEEP_ALL) {
		if (tr->nblocks)
			qsort(tr->blocks, tr->nblocks, sizeof(*tr->blocks), block_by_seq);
		if (f->nstalls)
			qsort(f->stalls, f->nstalls, sizeof(*f->stalls), stall_by_seq);
	}
	return pend_flush(tr, f);
}

static void no_free(void *p)
{
	(void)p;
}

void findings_free(struct trace *tr)
{
	struct findings *f = tr->findings;
	if (!f)
		return;
	tdestroy(f->bsite_tree, no_free);
	tdestroy(f->share_tree, no_free);
	tdestroy(f->ssite_tree, no_free);
	for (size_t i = 0; i < f->nbsites; i++)
		free(f->bsites[i]);
	for (size_t i = 0; i < f->nshares; i++)
		free(f->shares[i]);
	for (size_t i = 0; i < f->nssites; i++) {
		free(f->ssites[i]->key);
		free(f->ssites[i]);
	}
	for (size_t i = 0; i < f->nstalls; i++)
		free(f->stalls[i].samples);
	free(f->bsites);
	free(f->shares);
	free(f->ssites);
	free(f->stalls);
	free(f->pend);
	free(f->pend_ids);
	free(f);
	tr->findings = NULL;
}

/* ---- reading ---- */

size_t trace_block_sites(const struct trace *tr, struct block_site *const **v)
{
	*v = tr->findings ? tr->findings->bsites : NULL;
	return tr->findings ? tr->findings->nbsites : 0;
}

const struct block_site *trace_block_site_of(const struct trace *tr, const struct blocking *b)
{
	struct block_site key;
	bsite_key(&key, b);
	void *const *p = tr->findings ? tfind(&key, &tr->findings->bsite_tree, block_site_cmp) : NULL;
	return p ? *p : NULL;
}

size_t trace_stall_sites(const struct trace *tr, struct stall_site *const **v)
{
	*v = tr->findings ? tr->findings->ssites : NULL;
	return tr->findings ? tr->findings->nssites : 0;
}

size_t trace_stall_shares(const struct trace *tr, struct stall_share *const **v)
{
	*v = tr->findings ? tr->findings->shares : NULL;
	return tr->findings ? tr->findings->nshares : 0;
}

uint64_t trace_unsampled_ns(const struct trace *tr)
{
	return tr->findings ? tr->findings->unsampled_ns : 0;
}

size_t trace_stalls(const struct trace *tr, const struct stall **stalls)
{
	*stalls = tr->findings ? tr->findings->stalls : NULL;
	return tr->findings ? tr->findings->nstalls : 0;
}

struct rank_ctx {
	const char *v;
	size_t size;
	before_fn before;
};

static int by_rank(const void *a, const void *b, void *arg)
{
	const struct rank_ctx *c = arg;
	const void *x = c->v + *(const size_t *)a * c->size, *y = c->v + *(const size_t *)b * c->size;
	return c->before(x, y) ? -1 : c->before(y, x);
}

static int by_index(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

/* V is in the order recorded: the N first by rank, in that order */
static size_t listed(const void *v, size_t nv, size_t size, before_fn before, size_t n, size_t **idx)
{
	*idx = malloc((nv ? nv : 1) * sizeof(**idx));
	if (!*idx)
		return (size_t)-1;
	for (size_t i = 0; i < nv; i++)
		(*idx)[i] = i;
	if (nv <= n)
		return nv;
	struct rank_ctx c = { v, size, before };
	qsort_r(*idx, nv, sizeof(**idx), by_rank, &c);
	qsort(*idx, n, sizeof(**idx), by_index);
	return n;
}

size_t trace_listed_blocks(const struct trace *tr, size_t n, size_t **idx)
{
	return listed(tr->blocks, tr->nblocks, sizeof(*tr->blocks), block_before, n, idx);
}

size_t trace_listed_stalls(const struct trace *tr, size_t n, size_t **idx)
{
	const struct stall *st;
	size_t nst = trace_stalls(tr, &st);
	return listed(st, nst, sizeof(*st), stall_before, n, idx);
}

/* ---- top frames ---- */

int findings_top_key(const struct trace *tr, uint64_t id, char *key, size_t len, const struct site_frame **top,
		     uint64_t *top_off)
{
	const struct site_frame *fr;
	const uint64_t *off;
	size_t hidden, n = stack_frames(tr, id, &fr, &off, &hidden);
	if (n <= hidden)
		return 0;
	*top = &fr[hidden];
	*top_off = off[hidden];
	if (fr[hidden].function)
		snprintf(key, len, "%s|%s|%d", fr[hidden].function, fr[hidden].file ? fr[hidden].file : "",
			 fr[hidden].line);
	else
		snprintf(key, len, "%s+%" PRIx64, fr[hidden].module ? fr[hidden].module : "", off[hidden]);
	return 1;
}
