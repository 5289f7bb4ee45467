/* stacks_report.c — the report's stack sections: stacks of blocking calls,
 * stalls, blocking calls by call site and stalls by their top frame, as
 * JSON (stacks.h) and text.
 *
 * A call site is the blocking call's name and the first frame of the
 * program (the shim's own frames on top are hidden): its function, file and
 * line, or module+offset without symbols.  A stall's samples are grouped by
 * their top frame the same way; each sample stands for an equal share of the
 * stall's time (stalled ms are estimates, sample counts are exact).  Sites
 * come from the sums findings.c keeps of every finding; the stalls listed
 * one by one are the longest it kept. */
#include "findings.h"
#include "json.h"
#include "stacks.h"
#include "spans.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define SHOWN_FRAMES 16        /* frames per stack in the text report */

/* ---- frames ---- */

static void json_frame(FILE *f, const struct site_frame *fr, uint64_t offset)
{
	fputs("{\"function\":", f);
	json_str(f, fr->function);
	fputs(",\"module\":", f);
	json_str(f, fr->module ? fr->module : "[unknown]");
	fputs(",\"file\":", f);
	json_str(f, fr->file);
	if (fr->line > 0)
		fprintf(f, ",\"line\":%d", fr->line);
	else
		fputs(",\"line\":null", f);
	fprintf(f, ",\"offset\":%" PRIu64 "}", offset);
}

void stacks_json_frames(FILE *f, const struct trace *tr, uint64_t id)
{
	const struct site_frame *fr;
	const uint64_t *off;
	size_t hidden, n = stack_frames(tr, id, &fr, &off, &hidden);
	fputc('[', f);
	for (size_t i = hidden; i < n; i++) {
		if (i > hidden)
			fputc(',', f);
		json_frame(f, &fr[i], off[i]);
	}
	fputc(']', f);
}

/* "slow_sleep (loop.c:41)" or "loop-O2+0x1514" */
static void frame_text(const struct site_frame *fr, uint64_t offset, char *buf, size_t len)
{
	struct site_frame x = *fr;
	x.offset = offset;
	site_frame_name(&x, buf, len);
}

static void text_stack(FILE *f, const struct trace *tr, uint64_t id, const char *indent)
{
	const struct site_frame *fr;
	const uint64_t *off;
	size_t hidden, n = stack_frames(tr, id, &fr, &off, &hidden);
	if (n <= hidden) {
		fprintf(f, "%s(no stack)\n", indent);
		return;
	}
	for (size_t i = hidden; i < n && i < hidden + SHOWN_FRAMES; i++) {
		char one[1024];
		frame_text(&fr[i], off[i], one, sizeof(one));
		fprintf(f, "%s%s%s\n", indent, i == hidden ? "at " : "   ", one);
	}
	if (n > hidden + SHOWN_FRAMES)
		fprintf(f, "%s   ... %zu more\n", indent, n - hidden - SHOWN_FRAMES);
}

/* ---- aggregation by top frame ---- */

struct site {
	char key[1200];
	const char *call;               /* blocking sites; NULL for stalls */
	const struct site_frame *top;   /* NULL: no stack */
	uint64_t top_off;
	uint64_t count, total_ns, max_ns;
	uint64_t stalls;                /* stall sites: stalls it was sampled in */
	uint64_t stack;                 /* the longest one's, or the first sample's */
	uint64_t last, max_last;        /* blocking sites: record numbers of its last call, and of max_ns */
};

struct sites {
	struct site *v;
	size_t n, cap;
};

static struct site *site_get(struct sites *s, const char *call, const char *key)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i].key, key) && (call ? s->v[i].call && !strcmp(s->v[i].call, call) : !s->v[i].call))
			return &s->v[i];
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct site *p = realloc(s->v, cap * sizeof(*p));
		if (!p)
			return NULL;
		s->v = p;
		s->cap = cap;
	}
	struct site *x = &s->v[s->n++];
	memset(x, 0, sizeof(*x));
	snprintf(x->key, sizeof(x->key), "%s", key);
	x->call = call;
	return x;
}

static int by_total(const void *a, const void *b)
{
	const struct site *x = a, *y = b;
	return x->total_ns < y->total_ns ? 1 : x->total_ns > y->total_ns ? -1 : 0;
}

/* Blocking calls by call and top frame, from the sums per call, fd kind and
 * stack (in the order first seen, so the sites come in the order they
 * would reading the calls one by one): the stack shown is that of the
 * site's last call of its longest duration. */
static void blocking_sites(const struct trace *tr, struct sites *out)
{
	struct block_site *const *raw;
	size_t nraw = trace_block_sites(tr, &raw);
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < nraw; i++) {
		const struct block_site *r = raw[i];
		char key[1200] = "";
		const struct site_frame *top = NULL;
		uint64_t off = 0;
		findings_top_key(tr, r->stack, key, sizeof(key), &top, &off);
		struct site *s = site_get(out, r->call, key);
		if (!s)
			continue;
		if (r->last >= s->last) {       /* the frame of its last call */
			s->last = r->last;
			s->top = top;
			s->top_off = off;
		}
		s->count += r->count;
		s->total_ns += r->total_ns;
		if (r->max_ns > s->max_ns || (r->max_ns == s->max_ns && r->max_last >= s->max_last)) {
			s->max_ns = r->max_ns;
			s->max_last = r->max_last;
			s->stack = r->stack;
		}
	}
	if (out->n)
		qsort(out->v, out->n, sizeof(*out->v), by_total);
}

static void stall_sites(const struct trace *tr, struct sites *out)
{
	struct stall_site *const *v;
	size_t n = trace_stall_sites(tr, &v);
	memset(out, 0, sizeof(*out));
	out->v = calloc(n ? n : 1, sizeof(*out->v));
	if (!out->v)
		return;
	out->n = out->cap = n;
	for (size_t i = 0; i < n; i++) {
		struct site *s = &out->v[i];
		snprintf(s->key, sizeof(s->key), "%s", v[i]->key);
		s->top = v[i]->top;
		s->top_off = v[i]->top_off;
		s->count = v[i]->samples;
		s->total_ns = v[i]->total_ns;
		s->stalls = v[i]->stalls;
		s->stack = v[i]->stack;
	}
	if (out->n)
		qsort(out->v, out->n, sizeof(*out->v), by_total);
}

/* The sample stack seen most often in a stall (the first on ties). */
static uint64_t stall_stack(const struct stall *s)
{
	uint64_t best = 0;
	uint32_t best_n = 0;
	for (uint32_t i = 0; i < s->nsamples; i++) {
		uint32_t k = 0;
		for (uint32_t j = 0; j < s->nsamples; j++)
			k += s->samples[j] == s->samples[i];
		if (k > best_n) {
			best_n = k;
			best = s->samples[i];
		}
	}
	return best;
}

/* ---- JSON ---- */

static void json_site_frame(FILE *f, const struct site *s)
{
	if (s->top)
		json_frame(f, s->top, s->top_off);
	else
		fputs("null", f);
}

void stacks_json(FILE *f, const struct trace *tr, size_t top, size_t list)
{
	const struct stall *st;
	size_t *idx;
	trace_stalls(tr, &st);
	size_t n = trace_listed_stalls(tr, list, &idx);
	if (!idx)
		n = 0;
	fputs("\"stalls\":[", f);
	for (size_t k = 0; k < n; k++) {
		const struct stall *s = &st[idx[k]];
		fprintf(f, "%s{\"tid\":%" PRId64 ",\"at_ms\":", k ? "," : "", s->tid);
		json_ms(f, s->t_ns);
		fputs(",\"duration_ms\":", f);
		json_ms(f, s->dur_ns);
		fputs(",\"iteration_ms\":", f);
		json_ms(f, s->iter_ns);
		fputs(",\"blocked_ms\":", f);
		json_ms(f, s->blocked_ns);
		fputs(",\"cause\":", f);
		json_str(f, s->cause[0] ? s->cause : NULL);
		fputs(",\"cpu_ms\":", f);
		if (s->sched)
			json_ms(f, s->cpu_ns);
		else
			fputs("null", f);
		fputs(",\"runqueue_ms\":", f);
		if (s->sched)
			json_ms(f, s->runq_ns);
		else
			fputs("null", f);
		fprintf(f, ",\"samples\":%" PRIu64 ",\"stack\":", s->sampled);
		stacks_json_frames(f, tr, stall_stack(s));
		spans_json_attr(f, tr, s->span, s->request);
		fputc('}', f);
	}
	free(idx);
	fprintf(f, "],\"stalls_total\":%" PRIu64 ",\"stalls_listed\":%zu,\"stalls_total_ms\":", tr->stalls_total, n);
	json_ms(f, tr->stalled_ns);
	fputc(',', f);
	struct sites bs, ss;
	blocking_sites(tr, &bs);
	stall_sites(tr, &ss);
	fputs("\"blocking_sites\":[", f);
	for (size_t i = 0; i < bs.n && i < top; i++) {
		fputs(i ? ",{\"call\":" : "{\"call\":", f);
		json_str(f, bs.v[i].call);
		fputs(",\"site\":", f);
		json_site_frame(f, &bs.v[i]);
		fprintf(f, ",\"count\":%" PRIu64 ",\"total_ms\":", bs.v[i].count);
		json_ms(f, bs.v[i].total_ns);
		fputs(",\"max_ms\":", f);
		json_ms(f, bs.v[i].max_ns);
		fputs(",\"stack\":", f);
		stacks_json_frames(f, tr, bs.v[i].stack);
		fputc('}', f);
	}
	fputs("],\"stall_sites\":[", f);
	for (size_t i = 0; i < ss.n && i < top; i++) {
		fputs(i ? ",{\"site\":" : "{\"site\":", f);
		json_site_frame(f, &ss.v[i]);
		fprintf(f, ",\"samples\":%" PRIu64 ",\"stalls\":%" PRIu64 ",\"stalled_ms\":", ss.v[i].count,
			ss.v[i].stalls);
		json_ms(f, ss.v[i].total_ns);
		fputs(",\"stack\":", f);
		stacks_json_frames(f, tr, ss.v[i].stack);
		fputc('}', f);
	}
	fputc(']', f);
	free(bs.v);
	free(ss.v);
}

/* ---- text ---- */

static const char *thread_name(const struct trace *tr, int64_t tid)
{
	for (size_t i = 0; i < tr->nthreads; i++)
		if (tr->threads[i].tid == tid)
			return tr->threads[i].name;
	return "?";
}

static void site_text(const struct site *s, char *buf, size_t len)
{
	if (s->top)
		frame_text(s->top, s->top_off, buf, len);
	else
		snprintf(buf, len, "(no stack)");
}

void stacks_text(FILE *f, const struct trace *tr, size_t top, size_t list)
{
	struct sites bs, ss;
	blocking_sites(tr, &bs);
	if (bs.n) {
		fprintf(f, "\nblocking call sites (by total time%s):\n", bs.n > top ? ", top ones" : "");
		fprintf(f, "  %7s %10s %10s  %-16s %s\n", "count", "total ms", "max ms", "call", "site");
	}
	for (size_t i = 0; i < bs.n && i < top; i++) {
		char site[1024];
		site_text(&bs.v[i], site, sizeof(site));
		fprintf(f, "  %7" PRIu64 " %10.1f %10.1f  %-16s %s\n", bs.v[i].count, ms(bs.v[i].total_ns),
			ms(bs.v[i].max_ns), bs.v[i].call, site);
		if (bs.v[i].top)
			text_stack(f, tr, bs.v[i].stack, "             ");
	}

	const struct stall *st;
	size_t *idx;
	trace_stalls(tr, &st);
	size_t n = trace_listed_stalls(tr, list, &idx);
	if (!idx)
		n = 0;
	fprintf(f, "\nstalls on loop threads (>= %" PRIu64 " ms busy without a blocking call): %" PRIu64
		   ", %.1f ms in total\n", tr->stall_ms, tr->stalls_total, ms(tr->stalled_ns));
	if (n)
		fprintf(f, "  %10s  %-8s %-16s %11s %13s %8s  %s\n", "at ms", "tid", "thread", "stalled ms",
			"iteration ms", "samples", "cause");
	for (size_t k = 0; k < n; k++) {
		const struct stall *s = &st[idx[k]];
		char figs[96] = "";
		if (s->sched)
			snprintf(figs, sizeof(figs), " (ran %.1f ms, waited for a CPU %.1f ms)", ms(s->cpu_ns),
				 ms(s->runq_ns));
		fprintf(f, "  %10.1f  %-8" PRId64 " %-16s %11.1f %13.1f %8" PRIu64 "  %s%s\n", ms(s->t_ns), s->tid,
			thread_name(tr, s->tid), ms(s->dur_ns), ms(s->iter_ns), s->sampled, stall_cause_words(s), figs);
	}
	free(idx);
	if (tr->stalls_total > n)
		fprintf(f, "  ... %" PRIu64 " more stalls not listed, none longer than those above "
			   "(--all to list every one)\n", tr->stalls_total - n);

	stall_sites(tr, &ss);
	if (ss.n) {
		fprintf(f, "\nstalls by top frame (samples%s):\n", ss.n > top ? ", top ones" : "");
		fprintf(f, "  %7s %12s %7s  %s\n", "samples", "~stalled ms", "stalls", "site");
	}
	for (size_t i = 0; i < ss.n && i < top; i++) {
		char site[1024];
		site_text(&ss.v[i], site, sizeof(site));
		fprintf(f, "  %7" PRIu64 " %12.1f %7" PRIu64 "  %s\n", ss.v[i].count, ms(ss.v[i].total_ns), ss.v[i].stalls,
			site);
		text_stack(f, tr, ss.v[i].stack, "             ");
	}
	free(bs.v);
	free(ss.v);
}
