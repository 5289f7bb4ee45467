/* folded.c — `export --format folded`: folded stacks, the input of
 * flamegraph.pl and speedscope.
 *
 * One line per distinct stack: frames root first, separated by ';', a space,
 * and a weight in microseconds.  Blocking calls weigh their duration and end
 * in the call's name (".../slow_sleep;usleep"); stalls weigh their stalled
 * time, split evenly over their samples, and end in the sampled frame.  The
 * shim's own frames are left out.  A frame is its function name, or
 * module+0xoffset without symbols.  Lines are merged across all traces and
 * sorted, so the output does not depend on the order of events. */
#include "export.h"
#include "findings.h"
#include "stacks.h"
#include "trace.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct line {
	char *text;
	uint64_t ns;
};

struct lines {
	struct line *v;
	size_t n, cap;
};

/* Appends S to BUF at *used, with ';' and whitespace (the format's
 * separators) made '_'. */
static void put(char *buf, size_t len, size_t *used, const char *s)
{
	for (; *s && *used + 1 < len; s++)
		buf[(*used)++] = (*s == ';' || *s == ' ' || *s == '\t' || *s == '\n') ? '_' : *s;
	buf[*used] = '\0';
}

static void put_sep(char *buf, size_t len, size_t *used)
{
	if (*used + 1 < len)
		buf[(*used)++] = ';';
	buf[*used] = '\0';
}

static void put_frame(char *buf, size_t len, size_t *used, const struct site_frame *f, uint64_t off)
{
	char one[600];
	if (*used)
		put_sep(buf, len, used);
	(void)off;
	if (f->function)
		snprintf(one, sizeof(one), "%s", f->function);
	else
		site_frame_name(f, one, sizeof(one));
	put(buf, len, used, one);
}

/* Root-first frames of stack ID into BUF; "[no stack]" without any. */
static void stack_text(const struct trace *tr, uint64_t id, char *buf, size_t len)
{
	const struct site_frame *fr;
	const uint64_t *off;
	size_t hidden, n = stack_frames(tr, id, &fr, &off, &hidden), used = 0;
	buf[0] = '\0';
	for (size_t i = n; i-- > hidden;)
		put_frame(buf, len, &used, &fr[i], off[i]);
	if (!used)
		put(buf, len, &used, "[no stack]");
}

static int add(struct lines *ls, const char *text, uint64_t ns)
{
	if (ls->n == ls->cap) {
		size_t cap = ls->cap ? ls->cap * 2 : 256;
		struct line *p = realloc(ls->v, cap * sizeof(*p));
		if (!p)
			return -1;
		ls->v = p;
		ls->cap = cap;
	}
	if (!(ls->v[ls->n].text = strdup(text)))
		return -1;
	ls->v[ls->n++].ns = ns;
	return 0;
}

/* From the sums per call and stack, and per sample stack (every blocking
 * call and stall counts; none is kept one by one). */
static int add_trace(struct lines *ls, const struct trace *tr)
{
	static char buf[65536];
	struct block_site *const *bs;
	struct stall_share *const *sh;
	size_t n = trace_block_sites(tr, &bs);
	for (size_t i = 0; i < n; i++) {
		size_t used;
		stack_text(tr, bs[i]->stack, buf, sizeof(buf));
		used = strlen(buf);
		put_sep(buf, sizeof(buf), &used);
		put(buf, sizeof(buf), &used, bs[i]->call);
		if (add(ls, buf, bs[i]->total_ns) != 0)
			return -1;
	}
	if (trace_unsampled_ns(tr) && add(ls, "[unsampled stall]", trace_unsampled_ns(tr)) != 0)
		return -1;
	n = trace_stall_shares(tr, &sh);
	for (size_t i = 0; i < n; i++) {
		stack_text(tr, sh[i]->stack, buf, sizeof(buf));
		if (add(ls, buf, sh[i]->ns) != 0)
			return -1;
	}
	return 0;
}

static int by_text(const void *a, const void *b)
{
	return strcmp(((const struct line *)a)->text, ((const struct line *)b)->text);
}

int export_folded(FILE *out, struct trace_src *srcs, int n, char *err, size_t errlen)
{
	struct lines ls = { NULL, 0, 0 };
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		struct trace tr;
		char why[256];
		int loaded = trace_load_src(&srcs[i], &tr, 0, why, sizeof(why));
		trace_src_close(&srcs[i]);      /* one pass: many traces stay within the fd limit */
		if (loaded != 0) {
			snprintf(err, errlen, "%s: %s", srcs[i].path, why);
			rc = -1;
		} else if (add_trace(&ls, &tr) != 0) {
			snprintf(err, errlen, "out of memory");
			rc = -1;
		}
		trace_free(&tr);
	}
	if (rc == 0 && ls.n) {
		qsort(ls.v, ls.n, sizeof(*ls.v), by_text);
		for (size_t i = 0; i < ls.n;) {
			uint64_t ns = 0;
			size_t j = i;
			for (; j < ls.n && !strcmp(ls.v[j].text, ls.v[i].text); j++)
				ns += ls.v[j].ns;
			if ((ns + 500) / 1000)
				fprintf(out, "%s %" PRIu64 "\n", ls.v[i].text, (ns + 500) / 1000);
			i = j;
		}
	}
	for (size_t i = 0; i < ls.n; i++)
		free(ls.v[i].text);
	free(ls.v);
	return rc;
}
