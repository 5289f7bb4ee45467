/* span.c — the span and request API (include/asyncshim.h) inside the shim.
 *
 * Each context — a thread, or a task the shim follows (preload/task.h) —
 * has a small stack of open spans.  A task's stack hangs off its struct
 * as_task, so a span begun in a coroutine and suspended across a switch
 * stays with that coroutine; it is allocated at the task's first span and
 * given back when its last one ends.  Begins and ends are written as
 * records into the calling thread's ring (layout: span.h); the tools build
 * the tree from ids and parents.
 *
 * The stack is kept even while recording is off (asyncshim ctl disable), so
 * begins and ends stay paired; only what happens while recording is on is
 * written.  Deeper than SPAN_DEPTH: further begins and their ends are
 * ignored.
 *
 * Cumulative spans are added up in the context, one slot per (parent span,
 * name), and written as one record when the parent ends; slots outside any
 * span belong to the thread and are written every second, at thread exit
 * and at process exit (for the exiting thread). */
#define ASYNCSHIM_NO_INLINE
#include "../include/asyncshim.h"
#include "span.h"
#include "task.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <urcu/uatomic.h>

#define SPAN_DEPTH 32
#define SPAN_AGGS 8
#define ID_BLOCK 1024

enum frame_kind { FRAME_SPAN, FRAME_REQUEST, FRAME_CUMULATIVE };

struct span_agg {
	uint64_t parent;            /* span id, 0 = none (the thread's) */
	const char *key;            /* the program's pointer: the fast match */
	uint32_t gen;               /* bumped when the slot is reused */
	uint32_t used;
	char name[AS_SPAN_NAME_MAX + 1];
	uint64_t count, total, min, max, first;
};

struct span_frame {
	uint64_t id;                /* 0: not written (recording was off) */
	uint64_t start;             /* cumulative: ticks at begin */
	uint64_t prev_parent, prev_span, prev_request;
	struct span_agg *agg;       /* cumulative: its slot, NULL = not counted */
	uint32_t agg_gen;
	uint8_t kind;
};

struct as_span_ctx {
	unsigned depth, lost;
	uint64_t parent;            /* innermost written span or request */
	uint64_t span, request;     /* innermost written span; innermost request */
	struct span_frame f[SPAN_DEPTH];
	struct span_agg agg[SPAN_AGGS];
};

static __thread struct as_span_ctx *thread_ctx __attribute__((tls_model("initial-exec")));
static __thread struct as_span_ctx *spare_ctx __attribute__((tls_model("initial-exec")));
static __thread uint64_t id_next __attribute__((tls_model("initial-exec")));
static __thread uint64_t id_end __attribute__((tls_model("initial-exec")));
static uint64_t last_id_block;
static uint64_t second_ticks;
static pthread_key_t exit_key;
static int exit_key_ok;

/* ---- where records go ---- */

/* The ring to record into while recording is on. */
static struct as_thread *rec_thread(void)
{
	if (!CMM_LOAD_SHARED(as_active) || as_tls.busy || as_tls.internal)
		return NULL;
	return as_thread_self();
}

/* For ends and aggregates of what was written: also while disabled. */
static struct as_thread *rec_thread_any(void)
{
	if (!CMM_LOAD_SHARED(as_live) || as_tls.busy || as_tls.internal)
		return NULL;
	struct as_thread *t = as_tls.t;
	return t ? t : rec_thread();
}

static uint64_t new_id(void)
{
	if (id_next == id_end) {
		uint64_t b = uatomic_add_return(&last_id_block, ID_BLOCK);
		id_next = b - ID_BLOCK + 1;
		id_end = b + 1;
	}
	return id_next++;
}

/* Length of S cut to MAX bytes, not inside a UTF-8 sequence. */
static size_t text_len(const char *s, size_t max)
{
	if (!s)
		return 0;
	size_t n = strnlen(s, max + 1);
	if (n <= max)
		return n;
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return n;
}

/* Reserve HEAD records plus the TEXT records for LEN bytes; a full ring
 * drops and counts. */
static struct as_record *reserve(struct as_thread *t, unsigned head, size_t len, unsigned *ntext)
{
	unsigned k = (unsigned)((len + AS_TEXT_BYTES - 1) / AS_TEXT_BYTES);
	struct as_record *r = as_reserve_n(t, head + k);
	if (!r) {
		__atomic_fetch_add(&t->dropped, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	*ntext = k;
	memset(r, 0, sizeof(*r));
	return r;
}

static struct as_record *slot_after(struct as_thread *t, struct as_record *r, unsigned j)
{
	uint64_t pos = (uint64_t)(r - t->ring);
	return &t->ring[(pos + j) & (t->cap - 1)];
}

/* Write TEXT (LEN bytes) into the K records from slot FROM after R. */
static void put_text(struct as_thread *t, struct as_record *r, unsigned from, const char *text, size_t len,
		     unsigned k)
{
	for (unsigned j = 0; j < k; j++) {
		struct as_record *x = slot_after(t, r, from + j);
		unsigned char b[AS_TEXT_BYTES] = { 0 };
		size_t n = len - (size_t)j * AS_TEXT_BYTES;
		n = n < AS_TEXT_BYTES ? n : AS_TEXT_BYTES;
		memcpy(b, text + (size_t)j * AS_TEXT_BYTES, n);
		memset(x, 0, sizeof(*x));
		x->kind = AS_REC_TEXT;
		x->call = (uint8_t)n;
		memcpy(&x->ts, b, 8);
		memcpy(&x->dur, b + 8, 8);
		memcpy(&x->stack, b + 16, 4);
		memcpy(&x->aux, b + 20, 4);
	}
}

static int write_begin(struct as_thread *t, uint64_t id, uint64_t parent, int kind, const char *name)
{
	size_t len = text_len(name, AS_SPAN_NAME_MAX);
	unsigned k;
	struct as_record *r = reserve(t, 1, len, &k);
	if (!r)
		return -1;
	r->kind = AS_REC_SPAN_BEGIN;
	r->call = (uint8_t)kind;
	r->ts = as_now();
	r->dur = id;
	r->fd = (int32_t)len;
	r->fd_kind = (uint8_t)k;
	as_span_rec_set_parent(r, parent);
	put_text(t, r, 1, name, len, k);
	as_commit(t);
	return 0;
}

static void write_end(struct as_thread *t, uint64_t id)
{
	struct as_record *r = as_reserve(t);
	if (!r)
		return;
	memset(r, 0, sizeof(*r));
	r->kind = AS_REC_SPAN_END;
	r->ts = as_now();
	r->dur = id;
	as_commit(t);
}

static void write_meta(struct as_thread *t, uint64_t id, const char *key, int is_str, long long v,
		       const char *str)
{
	char text[AS_SPAN_KEY_MAX + AS_SPAN_VALUE_MAX];
	size_t klen = text_len(key, AS_SPAN_KEY_MAX), vlen = is_str ? text_len(str, AS_SPAN_VALUE_MAX) : 0;
	if (!klen)
		return;
	memcpy(text, key, klen);
	if (vlen)
		memcpy(text + klen, str, vlen);
	unsigned k;
	struct as_record *r = reserve(t, 1, klen + vlen, &k);
	if (!r)
		return;
	r->kind = AS_REC_SPAN_META;
	r->call = (uint8_t)is_str;
	r->ts = (uint64_t)v;
	r->dur = id;
	r->fd = (int32_t)klen;
	r->aux = (uint32_t)vlen;
	r->fd_kind = (uint8_t)k;
	put_text(t, r, 1, text, klen + vlen, k);
	as_commit(t);
}

/* ---- contexts ---- */

static struct as_span_ctx **ctx_slot(void)
{
	struct as_task *tk = as_task_cur;
	return tk ? (struct as_span_ctx **)&tk->spans : &thread_ctx;
}

static struct as_span_ctx *new_ctx(void)
{
	struct as_span_ctx *c = spare_ctx;
	if (c) {
		spare_ctx = NULL;
	} else {
		int saved = errno;
		c = malloc(sizeof(*c));
		errno = saved;
		if (!c)
			return NULL;
	}
	memset(c, 0, offsetof(struct as_span_ctx, f));
	for (unsigned i = 0; i < SPAN_AGGS; i++)
		c->agg[i].used = 0;
	return c;
}

static struct as_span_ctx *ctx_in(struct as_span_ctx **slot, int create)
{
	if (*slot || !create)
		return *slot;
	struct as_span_ctx *c = new_ctx();
	cmm_barrier();          /* filled before a signal handler can see it */
	*slot = c;
	if (c && slot == &thread_ctx && exit_key_ok)
		pthread_setspecific(exit_key, c);   /* so that thread_exit runs */
	return c;
}

static struct as_span_ctx *ctx_get(int create)
{
	return ctx_in(ctx_slot(), create);
}

/* A task's context goes back when its last span has ended. */
static void ctx_maybe_release(struct as_span_ctx *c)
{
	struct as_task *tk = as_task_cur;
	if (!tk || tk->spans != c || c->depth || c->lost)
		return;
	for (unsigned i = 0; i < SPAN_AGGS; i++)
		if (c->agg[i].used)
			return;
	tk->spans = NULL;
	cmm_barrier();
	if (!spare_ctx) {
		spare_ctx = c;
	} else {
		int saved = errno;
		free(c);
		errno = saved;
	}
}

/* ---- cumulative aggregates ---- */

static void agg_write(struct span_agg *a)
{
	struct as_thread *t = a->count ? rec_thread_any() : NULL;
	if (t) {
		size_t len = strlen(a->name);
		unsigned k;
		struct as_record *r = reserve(t, 2, len, &k);
		if (r) {
			struct as_record *mm = slot_after(t, r, 1);
			r->kind = AS_REC_SPAN_CUMUL;
			r->ts = a->total;
			r->dur = a->count;
			r->fd = (int32_t)len;
			r->fd_kind = (uint8_t)k;
			as_span_rec_set_parent(r, a->parent);
			memset(mm, 0, sizeof(*mm));
			mm->kind = AS_REC_SPAN_MINMAX;
			mm->ts = a->min;
			mm->dur = a->max;
			as_span_rec_set_parent(mm, a->first);
			put_text(t, r, 2, a->name, len, k);
			as_commit(t);
		}
	}
	a->used = 0;
	a->gen++;
}

/* The slot for NAME under PARENT in C, made (or taken from the oldest)
 * when missing. */
static struct span_agg *agg_find(struct as_span_ctx *c, uint64_t parent, const char *name)
{
	struct span_agg *free_slot = NULL, *oldest = NULL;
	size_t len = text_len(name, AS_SPAN_NAME_MAX);
	for (unsigned i = 0; i < SPAN_AGGS; i++) {
		struct span_agg *a = &c->agg[i];
		if (!a->used) {
			free_slot = free_slot ? free_slot : a;
			continue;
		}
		if (a->parent == parent &&
		    (a->key == name || (!strncmp(a->name, name, len) && a->name[len] == '\0')))
			return a;
		if (!oldest || a->first < oldest->first)
			oldest = a;
	}
	struct span_agg *a = free_slot;
	if (!a) {
		a = oldest;
		agg_write(a);
	}
	a->used = 1;
	a->parent = parent;
	a->key = name;
	memcpy(a->name, name, len);
	a->name[len] = '\0';
	a->count = a->total = a->max = a->first = 0;
	a->min = UINT64_MAX;
	return a;
}

/* Write and free the slots aggregated under span PARENT. */
static void agg_flush_parent(struct as_span_ctx *c, uint64_t parent)
{
	for (unsigned i = 0; i < SPAN_AGGS; i++)
		if (c->agg[i].used && c->agg[i].parent == parent)
			agg_write(&c->agg[i]);
}

/* ---- the stack API ---- */

static void push(struct as_span_ctx *c, int kind, const char *name)
{
	struct span_frame *f = &c->f[c->depth++];
	f->kind = (uint8_t)kind;
	f->id = 0;
	f->agg = NULL;
	f->prev_parent = c->parent;
	f->prev_span = c->span;
	f->prev_request = c->request;
	struct as_thread *t = rec_thread();
	if (!t)
		return;
	uint64_t id = new_id();
	if (write_begin(t, id, c->parent, kind == FRAME_REQUEST ? AS_SPAN_REQUEST : AS_SPAN_PLAIN, name) != 0)
		return;
	f->id = id;
	c->parent = id;
	if (kind == FRAME_REQUEST)
		c->request = id;
	else
		c->span = id;
}

/* The context a new frame goes on, or NULL when none may: the shim is off,
 * or the stack is full (the frame is then counted as lost). */
static struct as_span_ctx *ctx_for_push(void)
{
	if (!CMM_LOAD_SHARED(as_live) || as_tls.internal)
		return NULL;
	struct as_span_ctx *c = ctx_get(1);
	if (c && c->depth == SPAN_DEPTH) {
		c->lost++;
		return NULL;
	}
	return c;
}

static void begin(int kind, const char *name)
{
	struct as_span_ctx *c = ctx_for_push();
	if (c)
		push(c, kind, name ? name : "");
}

/* End the top frame of C. */
static void pop(struct as_span_ctx *c)
{
	struct span_frame *f = &c->f[--c->depth];
	if (f->kind == FRAME_CUMULATIVE) {
		struct span_agg *a = f->agg;
		if (!a || a->gen != f->agg_gen || !a->used || !CMM_LOAD_SHARED(as_active))
			return;
		uint64_t now = as_now(), d = now - f->start;
		if (!a->count)
			a->first = f->start;
		a->count++;
		a->total += d;
		a->min = d < a->min ? d : a->min;
		a->max = d > a->max ? d : a->max;
		if (!a->parent && now - a->first >= second_ticks)
			agg_write(a);   /* outside any span: at most a second late */
		return;
	}
	if (f->id) {
		agg_flush_parent(c, f->id);     /* its cumulative children, before its end */
		struct as_thread *t = rec_thread_any();
		if (t)
			write_end(t, f->id);
	}
	c->parent = f->prev_parent;
	c->span = f->prev_span;
	c->request = f->prev_request;
}

static void as_api_span_begin(const char *name)
{
	begin(FRAME_SPAN, name);
}

static void as_api_request_begin(const char *id)
{
	begin(FRAME_REQUEST, id);
}

/* The context whose frames an end applies to, or NULL (shim off, none). */
static struct as_span_ctx *ctx_for_end(void)
{
	if (!CMM_LOAD_SHARED(as_live) || as_tls.internal)
		return NULL;
	return ctx_get(0);
}

static void as_api_span_end(void)
{
	struct as_span_ctx *c = ctx_for_end();
	if (!c)
		return;
	if (c->lost) {
		c->lost--;
		return;
	}
	if (!c->depth || c->f[c->depth - 1].kind == FRAME_REQUEST)
		return;         /* nothing to end, or a request: not ours to end */
	pop(c);
	ctx_maybe_release(c);
}

static void as_api_request_end(void)
{
	struct as_span_ctx *c = ctx_for_end();
	if (!c)
		return;
	unsigned i = c->depth;
	while (i > 0 && c->f[i - 1].kind != FRAME_REQUEST)
		i--;
	if (!i)
		return;
	c->lost = 0;            /* spans lost beyond the depth were inside it */
	while (c->depth >= i)
		pop(c);
	ctx_maybe_release(c);
}

static void as_api_cumulative_begin(const char *name)
{
	struct as_span_ctx *c = ctx_for_push();
	if (!c)
		return;
	struct span_frame *f = &c->f[c->depth++];
	f->kind = FRAME_CUMULATIVE;
	f->id = 0;
	f->agg = NULL;
	if (!CMM_LOAD_SHARED(as_active) || as_tls.busy)
		return;
	/* outside any span the slot is the thread's, whatever task runs */
	struct as_span_ctx *home = c->parent ? c : ctx_in(&thread_ctx, 1);
	if (!home)
		return;
	f->agg = agg_find(home, c->parent, name ? name : "");
	f->agg_gen = f->agg->gen;
	f->start = as_now();
}

static void as_api_cumulative_end(void)
{
	as_api_span_end();
}

static void set_meta(const char *key, int is_str, long long v, const char *str)
{
	if (!CMM_LOAD_SHARED(as_live) || as_tls.internal || !key)
		return;
	struct as_span_ctx *c = ctx_get(0);
	struct as_thread *t = c && c->parent ? rec_thread() : NULL;
	if (t)
		write_meta(t, c->parent, key, is_str, v, str);
}

static void as_api_span_set_int(const char *key, long long value)
{
	set_meta(key, 0, value, NULL);
}

static void as_api_span_set_str(const char *key, const char *value)
{
	set_meta(key, 1, 0, value ? value : "");
}

/* ---- the id API (bindings, spans across callbacks) ---- */

AS_EXPORT uint64_t asyncshim_span_open(const char *name, uint64_t parent, int kind)
{
	struct as_thread *t = rec_thread();
	if (!t)
		return 0;
	uint64_t id = new_id();
	int k = kind == ASYNCSHIM_KIND_REQUEST ? AS_SPAN_REQUEST : AS_SPAN_PLAIN;
	return write_begin(t, id, parent, k, name ? name : "") == 0 ? id : 0;
}

AS_EXPORT void asyncshim_span_close(uint64_t span)
{
	struct as_thread *t = span ? rec_thread_any() : NULL;
	if (t)
		write_end(t, span);
}

AS_EXPORT void asyncshim_span_meta_int(uint64_t span, const char *key, long long value)
{
	struct as_thread *t = span && key ? rec_thread() : NULL;
	if (t)
		write_meta(t, span, key, 0, value, NULL);
}

AS_EXPORT void asyncshim_span_meta_str(uint64_t span, const char *key, const char *value)
{
	struct as_thread *t = span && key ? rec_thread() : NULL;
	if (t)
		write_meta(t, span, key, 1, 0, value ? value : "");
}

/* A binding's own cost (the Python module's ctypes calls, timed there): NS
 * more for the shim's overhead estimate of this thread. */
AS_EXPORT void asyncshim_overhead(uint64_t ns)
{
	struct as_thread *t = rec_thread_any();
	if (t)
		CMM_STORE_SHARED(t->api_ns, t->api_ns + ns);
}

/* What findings on this thread (or task) are attributed to from now on. */
AS_EXPORT void asyncshim_attribute(uint64_t span, uint64_t request)
{
	if (!CMM_LOAD_SHARED(as_live) || as_tls.internal)
		return;
	struct as_span_ctx *c = ctx_get(span || request);
	if (!c)
		return;
	c->span = span;
	c->request = request;
	c->parent = span ? span : request;
}

AS_EXPORT const struct asyncshim_api asyncshim_api_v1 = {
	.version = ASYNCSHIM_API_VERSION,
	.size = sizeof(struct asyncshim_api),
	.span_begin = as_api_span_begin,
	.span_end = as_api_span_end,
	.span_set_int = as_api_span_set_int,
	.span_set_str = as_api_span_set_str,
	.cumulative_begin = as_api_cumulative_begin,
	.cumulative_end = as_api_cumulative_end,
	.request_begin = as_api_request_begin,
	.request_end = as_api_request_end,
	.span_open = asyncshim_span_open,
	.span_close = asyncshim_span_close,
	.span_meta_int = asyncshim_span_meta_int,
	.span_meta_str = asyncshim_span_meta_str,
	.attribute = asyncshim_attribute,
};

/* ---- the shim's side ---- */

void as_span_note(struct as_thread *t)
{
	struct as_task *tk = as_task_cur;
	const struct as_span_ctx *c = tk ? tk->spans : thread_ctx;
	if (!c || (!c->span && !c->request))
		return;
	struct as_record *r = as_reserve(t);
	if (!r)
		return;
	memset(r, 0, sizeof(*r));
	r->kind = AS_REC_SPAN_AT;
	r->dur = c->span;
	r->ts = c->request;
	as_commit(t);
}

/* The hot loop's cost cannot be timed in place without doubling it (two
 * more clock reads per run): it is timed here once, on the collector
 * thread, through the same entry points, into a context under a span id no
 * one uses so that its aggregate is never written. */
double as_span_cumulative_ns(void)
{
	static struct as_span_ctx c;
	const struct asyncshim_api *volatile api = &asyncshim_api_v1;
	struct as_span_ctx *saved = thread_ctx;
	int internal = as_tls.internal, busy = as_tls.busy;
	double best = 0;
	memset(&c, 0, sizeof(c));
	c.parent = UINT64_MAX;
	thread_ctx = &c;
	as_tls.internal = as_tls.busy = 0;
	for (int k = 0; k < 5; k++) {
		uint64_t t0 = as_mono_ns();
		for (int i = 0; i < 2000; i++) {
			api->cumulative_begin("calibrate");
			api->cumulative_end();
		}
		double d = (double)(as_mono_ns() - t0) / 2000;
		best = !k || d < best ? d : best;
	}
	as_tls.internal = internal;
	as_tls.busy = busy;
	thread_ctx = saved;
	return best;
}

void as_span_thread_flush(void)
{
	struct as_span_ctx *c = thread_ctx;
	if (c)
		agg_flush_parent(c, 0);
}

static void thread_exit(void *arg)
{
	(void)arg;
	as_span_thread_flush();
	struct as_span_ctx *c = thread_ctx, *s = spare_ctx;
	thread_ctx = spare_ctx = NULL;
	free(c);
	free(s);
}

/* Before as_buffer_init: key destructors run in creation order, and the
 * thread's ring must still be there to take its last aggregates. */
void as_span_init(void)
{
	exit_key_ok = pthread_key_create(&exit_key, thread_exit) == 0;
	second_ticks = (uint64_t)(1e9 / as_ns_per_tick);
}
