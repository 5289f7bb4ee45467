/* check.c — `asyncshim check [thresholds] [--suppress FILE]... [--junit FILE] TRACE...`
 *
 * Judges one or more traces together against thresholds, the way a test
 * suite fails on a sanitizer report: exit 0 pass, 1 violations, 2 bad input
 * or usage.  With no threshold given, any blocking call fails
 * (--max-blocking 0). */
#include "check.h"
#include "cli.h"
#include "stacks.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define USAGE "usage: asyncshim check [--max-block-ms N] [--max-blocking N] [--max-lag-p99-ms N] " \
	"[--max-stall-ms N] [--suppress FILE]... [--junit FILE] TRACE..."

static const char *const check_names[CHECK_COUNT] = {
	"max-block-ms", "max-blocking", "max-lag-p99-ms", "max-stall-ms",
};

const char *check_name(enum check_id id)
{
	return check_names[id];
}

const char *thread_name_of(const struct trace *tr, int64_t tid)
{
	for (size_t i = 0; i < tr->nthreads; i++)
		if (tr->threads[i].tid == tid)
			return tr->threads[i].name[0] ? tr->threads[i].name : "?";
	return "?";
}

/* ---- options ---- */

static int parse_limit(enum check_id id, const char *s, double *out)
{
	char *end;
	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	if (id == CHECK_BLOCKING) {
		if (strspn(s, "0123456789") != strlen(s) || strlen(s) > 12)
			return -1;
		*out = (double)strtoull(s, NULL, 10);
		return 0;
	}
	double v = strtod(s, &end);
	if (*end || !isfinite(v) || v < 0 || v > 1e9)
		return -1;
	*out = v;
	return 0;
}

static int bad_value(enum check_id id, const char *v)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "bad value '%.64s' for --%s (want %s)", v, check_names[id],
		 id == CHECK_BLOCKING ? "a count >= 0" : "a number of ms >= 0");
	return usage_error("check", msg);
}

/* ---- findings ---- */

struct findings {
	struct finding *v;
	size_t n;
};

static struct as_sup_rule *suppressed(struct as_sup *sup, const char *call, const struct site_stack *st)
{
	if (!sup->n || !st->n)
		return NULL;
	struct as_sup_frame fr[st->n];
	site_sup_frames(st, fr);
	return as_sup_match(sup, call, fr, st->n);
}

/* A blocking call is judged by its stack; a stall by its samples' stacks
 * (any of them may hold the suppressed function), named by its first one. */
static void see_finding(struct finding *f, struct as_sup *sup, struct check_result *r,
			const uint64_t *samples, size_t nsamples)
{
	site_label(&f->stack, f->site, sizeof(f->site));
	f->suppressed_by = suppressed(sup, f->call, &f->stack);
	for (size_t i = 1; i < nsamples && !f->suppressed_by; i++) {
		struct site_stack st;
		site_stack(f->tr, samples[i], &st);
		f->suppressed_by = suppressed(sup, NULL, &st);
	}
	if (f->suppressed_by) {
		f->suppressed_by->hits++;
		r->suppressed++;
	} else if (f->call) {
		r->blocking++;
	} else {
		r->stalls++;
	}
}

static int collect(struct trace *trs, size_t ntr, struct as_sup *sup, struct findings *fs, struct check_result *r)
{
	size_t total = 0;
	const struct stall *stalls;
	for (size_t i = 0; i < ntr; i++)
		total += trs[i].nblocks + trace_stalls(&trs[i], &stalls);
	fs->v = calloc(total ? total : 1, sizeof(*fs->v));
	if (!fs->v)
		return -1;
	for (size_t i = 0; i < ntr; i++) {
		for (size_t j = 0; j < trs[i].nblocks; j++) {
			const struct blocking *b = &trs[i].blocks[j];
			struct finding *f = &fs->v[fs->n++];
			f->tr = &trs[i];
			f->call = b->call;
			f->tid = b->tid;
			f->t_ns = b->t_ns;
			f->dur_ns = b->dur_ns;
			f->fd = b->fd;
			f->fd_kind = b->fd_kind;
			f->how = !strcmp(b->seen_by, "watchdog") ? ", found waiting in the kernel (no hook timed it)" : "";
			site_stack(&trs[i], b->stack, &f->stack);
			see_finding(f, sup, r, NULL, 0);
		}
		size_t n = trace_stalls(&trs[i], &stalls);
		for (size_t j = 0; j < n; j++) {
			const struct stall *st = &stalls[j];
			struct finding *f = &fs->v[fs->n++];
			f->tr = &trs[i];
			f->tid = st->tid;
			f->t_ns = st->t_ns;
			f->dur_ns = st->dur_ns;
			f->fd = -1;
			f->fd_kind = "";
			f->how = !strcmp(st->cause, "preempted") ? ", preempted: waiting for a CPU another process had"
				 : !strcmp(st->cause, "off_cpu") ? ", off CPU: short waits no blocking call explains"
				 : !strcmp(st->cause, "cpu") ? ", running on a CPU" : "";
			site_stack(&trs[i], st->nsamples ? st->samples[0] : 0, &f->stack);
			see_finding(f, sup, r, st->samples, st->nsamples);
		}
	}
	return 0;
}

/* ---- judging ---- */

static int same_group(const struct group *g, enum check_id id, const struct finding *f)
{
	const struct finding *w = g->worst;
	if (g->check != id || (!w->call) != (!f->call) || (f->call && strcmp(w->call, f->call)))
		return 0;
	return !strcmp(w->site, f->site);
}

static int add_to_group(struct check_result *r, enum check_id id, const struct finding *f, size_t *cap)
{
	for (size_t i = r->ngroups; i-- > 0;) {
		struct group *g = &r->groups[i];
		if (g->check != id)
			break;
		if (same_group(g, id, f)) {
			g->count++;
			g->total_ns += f->dur_ns;
			if (f->dur_ns > g->worst->dur_ns)
				g->worst = f;
			return 0;
		}
	}
	if (r->ngroups == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		struct group *p = realloc(r->groups, c * sizeof(*p));
		if (!p)
			return -1;
		r->groups = p;
		*cap = c;
	}
	r->groups[r->ngroups++] = (struct group){ .check = id, .worst = f, .count = 1, .total_ns = f->dur_ns };
	return 0;
}

static int judge_findings(struct check_result *r, const struct findings *fs, size_t *cap)
{
	static const enum check_id order[] = { CHECK_BLOCK_MS, CHECK_BLOCKING, CHECK_STALL_MS };
	for (size_t k = 0; k < 3; k++) {
		enum check_id id = order[k];
		if (!r->enabled[id])
			continue;
		if (id == CHECK_BLOCKING && (double)r->blocking <= r->limit[id])
			continue;
		for (size_t i = 0; i < fs->n; i++) {
			const struct finding *f = &fs->v[i];
			if (f->suppressed_by || (id == CHECK_STALL_MS) == (f->call != NULL))
				continue;
			if (id != CHECK_BLOCKING && ms(f->dur_ns) <= r->limit[id])
				continue;
			if (add_to_group(r, id, f, cap) != 0)
				return -1;
			r->violations[id]++;
		}
		if (id == CHECK_BLOCKING)
			r->violations[id] = 1;
	}
	return 0;
}

static int judge_lag(struct check_result *r, const struct trace *trs, size_t ntr)
{
	if (!r->enabled[CHECK_LAG_P99])
		return 0;
	for (size_t i = 0; i < ntr; i++) {
		for (size_t j = 0; j < trs[i].nthreads; j++) {
			const struct thread_info *t = &trs[i].threads[j];
			if (!t->loop || !t->lag.count)
				continue;
			uint64_t p99 = hist_percentile(&t->lag, 99);
			if (ms(p99) <= r->limit[CHECK_LAG_P99])
				continue;
			struct lag_violation *p = realloc(r->lags, (r->nlags + 1) * sizeof(*p));
			if (!p)
				return -1;
			r->lags = p;
			r->lags[r->nlags++] = (struct lag_violation){ &trs[i], t, p99 };
			r->violations[CHECK_LAG_P99]++;
		}
	}
	return 0;
}

/* ---- text ---- */

void check_summary(const struct check_result *r, enum check_id id, char *buf, size_t len)
{
	uint64_t n = r->violations[id];
	switch (id) {
	case CHECK_BLOCK_MS:
		snprintf(buf, len, "%" PRIu64 " blocking call%s longer than %g ms", n, n == 1 ? "" : "s",
			 r->limit[id]);
		break;
	case CHECK_BLOCKING:
		snprintf(buf, len, "%" PRIu64 " blocking call%s, at most %g allowed", r->blocking,
			 r->blocking == 1 ? "" : "s", r->limit[id]);
		break;
	case CHECK_LAG_P99:
		snprintf(buf, len, "%" PRIu64 " loop thread%s with p99 lag over %g ms", n, n == 1 ? "" : "s",
			 r->limit[id]);
		break;
	default:
		snprintf(buf, len, "%" PRIu64 " stall%s longer than %g ms", n, n == 1 ? "" : "s", r->limit[id]);
		break;
	}
}

void group_line(const struct group *g, char *buf, size_t len)
{
	const struct finding *f = g->worst;
	char dur[96], fd[64] = "";
	if (g->count == 1)
		snprintf(dur, sizeof(dur), "%.1f ms", ms(f->dur_ns));
	else
		snprintf(dur, sizeof(dur), "%.1f ms max, %.1f ms in total", ms(f->dur_ns), ms(g->total_ns));
	if (f->fd >= 0)
		snprintf(fd, sizeof(fd), ", fd %d%s%s", f->fd, f->fd_kind[0] ? " " : "", f->fd_kind);
	snprintf(buf, len, "%s %s, thread %s (tid %" PRId64 ", pid %" PRId64 ")%s%s, %" PRIu64 " time%s",
		 f->call ? f->call : "stall", dur, thread_name_of(f->tr, f->tid), f->tid, f->tr->pid, fd,
		 f->how ? f->how : "", g->count, g->count == 1 ? "" : "s");
}

static void print_groups(const struct check_result *r, enum check_id id)
{
	for (size_t i = 0; i < r->ngroups; i++) {
		const struct group *g = &r->groups[i];
		if (g->check != id)
			continue;
		char line[1024];
		group_line(g, line, sizeof(line));
		printf("  %s\n", line);
		if (g->worst->site[0])
			printf("      at %s\n", g->worst->site);
		else
			printf("      (no stack in the trace)\n");
	}
}

static void print_check(const struct check_result *r, enum check_id id)
{
	char sum[256];
	if (!r->enabled[id])
		return;
	if (!r->violations[id]) {
		if (id == CHECK_BLOCKING)
			printf("ok   %s %g: %" PRIu64 " blocking call%s\n", check_names[id], r->limit[id], r->blocking,
			       r->blocking == 1 ? "" : "s");
		else
			printf("ok   %s %g\n", check_names[id], r->limit[id]);
		return;
	}
	check_summary(r, id, sum, sizeof(sum));
	printf("FAIL %s %g: %s\n", check_names[id], r->limit[id], sum);
	if (id != CHECK_LAG_P99) {
		print_groups(r, id);
		return;
	}
	for (size_t i = 0; i < r->nlags; i++) {
		const struct lag_violation *l = &r->lags[i];
		printf("  loop thread %s (tid %" PRId64 ", pid %" PRId64 "): p99 lag %.1f ms, max %.1f ms, %" PRIu64
		       " iterations\n", l->thread->name[0] ? l->thread->name : "?", l->thread->tid, l->tr->pid,
		       ms(l->p99_ns), ms(l->thread->lag.max), l->thread->iterations);
	}
}

static void print_suppressions(const struct as_sup *sup)
{
	if (!sup->n)
		return;
	printf("suppressions:\n");
	for (size_t i = 0; i < sup->n; i++) {
		const struct as_sup_rule *s = &sup->rules[i];
		printf("  %s:%u  %-40s %" PRIu64 " suppressed\n", s->file, s->line, s->text, s->hits);
	}
}

static void warn_unused(const struct as_sup *sup)
{
	for (size_t i = 0; i < sup->n; i++) {
		const struct as_sup_rule *s = &sup->rules[i];
		if (!s->hits)
			fprintf(stderr, "asyncshim check: warning: %s:%u: suppression '%s' matched nothing\n", s->file,
				s->line, s->text);
	}
}

static void print_notes(const struct check_result *r, const struct trace *trs, size_t ntr)
{
	for (size_t i = 0; i < ntr; i++) {
		if (r->enabled[CHECK_BLOCK_MS] && r->limit[CHECK_BLOCK_MS] < (double)trs[i].block_ms)
			printf("note: %s recorded blocking calls of %" PRIu64 " ms or more only\n", trs[i].path,
			       trs[i].block_ms);
		if (r->enabled[CHECK_STALL_MS] && r->limit[CHECK_STALL_MS] < (double)trs[i].stall_ms)
			printf("note: %s recorded stalls of %" PRIu64 " ms or more only\n", trs[i].path,
			       trs[i].stall_ms);
		if (!trs[i].complete)
			printf("note: %s has no end record (the process died before its final flush)\n",
			       trs[i].path);
	}
}

static void print_result(const struct check_result *r, const struct trace *trs, size_t ntr)
{
	size_t loops = 0;
	uint64_t violations = 0;
	for (size_t i = 0; i < ntr; i++)
		for (size_t j = 0; j < trs[i].nthreads; j++)
			loops += trs[i].threads[j].loop;
	for (int id = 0; id < CHECK_COUNT; id++)
		violations += r->violations[id];
	printf("asyncshim check: %zu trace%s, %zu loop thread%s, %" PRIu64 " blocking call%s, %" PRIu64
	       " stall%s, %" PRIu64 " suppressed\n", ntr, ntr == 1 ? "" : "s", loops, loops == 1 ? "" : "s",
	       r->blocking, r->blocking == 1 ? "" : "s", r->stalls, r->stalls == 1 ? "" : "s", r->suppressed);
	print_notes(r, trs, ntr);
	for (int id = 0; id < CHECK_COUNT; id++)
		print_check(r, (enum check_id)id);
	print_suppressions(r->sup);
	if (violations)
		printf("asyncshim check: FAIL, %" PRIu64 " violation%s\n", violations, violations == 1 ? "" : "s");
	else
		printf("asyncshim check: pass\n");
}

/* ---- the command ---- */

#define OPT_LIMIT 1000     /* getopt values of the threshold options: OPT_LIMIT + check id */

struct check_args {
	struct check_result r;
	struct as_sup sup;
	const char *junit;
};

static int parse_args(int argc, char **argv, struct check_args *a)
{
	static const struct option longopts[] = {
		{ "max-block-ms", required_argument, NULL, OPT_LIMIT + CHECK_BLOCK_MS },
		{ "max-blocking", required_argument, NULL, OPT_LIMIT + CHECK_BLOCKING },
		{ "max-lag-p99-ms", required_argument, NULL, OPT_LIMIT + CHECK_LAG_P99 },
		{ "max-stall-ms", required_argument, NULL, OPT_LIMIT + CHECK_STALL_MS },
		{ "suppress", required_argument, NULL, 's' },
		{ "junit", required_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	char err[512];
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		if (c >= OPT_LIMIT && c < OPT_LIMIT + CHECK_COUNT) {
			enum check_id id = (enum check_id)(c - OPT_LIMIT);
			if (parse_limit(id, optarg, &a->r.limit[id]) != 0)
				return bad_value(id, optarg);
			a->r.enabled[id] = 1;
		} else if (c == 's') {
			if (as_sup_load(&a->sup, optarg, err, sizeof(err)) != 0) {
				fprintf(stderr, "asyncshim check: %s\n", err);
				return 2;
			}
		} else if (c == 'j') {
			a->junit = optarg;
		} else if (c == 'h') {
			printf("%s\n", USAGE);
			return 0;
		} else {
			char msg[512];
			snprintf(msg, sizeof(msg), "unknown option or missing value '%.64s'; %s", argv[optind - 1], USAGE);
			return usage_error("check", msg);
		}
	}
	if (optind >= argc)
		return usage_error("check", USAGE);
	int any = 0;
	for (int id = 0; id < CHECK_COUNT; id++)
		any |= a->r.enabled[id];
	if (!any)
		a->r.enabled[CHECK_BLOCKING] = 1;   /* limit 0: any blocking call fails */
	return -1;
}

int cmd_check(int argc, char **argv)
{
	struct check_args a;
	memset(&a, 0, sizeof(a));
	int rc = parse_args(argc, argv, &a);
	if (rc >= 0) {
		as_sup_free(&a.sup);
		return rc;
	}
	size_t ntr = (size_t)(argc - optind), loaded = 0, cap = 0;
	struct trace *trs = calloc(ntr, sizeof(*trs));
	struct findings fs = { NULL, 0 };
	char err[512];
	rc = trs ? 0 : 2;
	for (; rc == 0 && loaded < ntr; loaded++) {
		if (trace_load(argv[optind + (int)loaded], &trs[loaded], err, sizeof(err)) != 0) {
			fprintf(stderr, "asyncshim check: %s: %s\n", argv[optind + (int)loaded], err);
			rc = 2;
		}
		trace_release(&trs[loaded]);
	}
	a.r.sup = &a.sup;
	a.r.traces = trs;
	a.r.ntraces = ntr;
	if (rc == 0 && (collect(trs, ntr, &a.sup, &fs, &a.r) != 0 || judge_findings(&a.r, &fs, &cap) != 0 ||
			judge_lag(&a.r, trs, ntr) != 0)) {
		fprintf(stderr, "asyncshim check: out of memory\n");
		rc = 2;
	}
	if (rc == 0 && a.junit && junit_write(a.junit, &a.r, err, sizeof(err)) != 0) {
		fprintf(stderr, "asyncshim check: %s\n", err);
		rc = 2;
	}
	if (rc == 0) {
		print_result(&a.r, trs, ntr);
		fflush(stdout);
		warn_unused(&a.sup);
		for (int id = 0; id < CHECK_COUNT; id++)
			if (a.r.violations[id])
				rc = 1;
	}
	for (size_t i = 0; i < loaded; i++)
		trace_free(&trs[i]);
	free(trs);
	free(fs.v);
	free(a.r.groups);
	free(a.r.lags);
	as_sup_free(&a.sup);
	return rc;
}
