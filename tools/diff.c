/* diff.c — `asyncshim diff [--tolerance PCT] [--floor-ms N] [--json] BASE NEW`
 *
 * Compares two traces of the same program: lag percentiles per loop thread,
 * blocking time and count per call site, stall time.  Exit 0 no regression,
 * 1 regression, 2 bad input or usage.
 *
 * The rules are chosen to hold on a loaded machine, where one run's 150 ms
 * sleep takes 170 ms in the next:
 *   - a blocking call site that BASE does not have is a regression;
 *   - any other value regresses only when it grew by more than PCT percent of
 *     its BASE value AND by at least the floor (default: the traces' block_ms),
 *     so tiny lags (0.01 ms -> 0.03 ms) and scheduling noise never count;
 *   - lag is judged on p50, p95, p99 and max (a max that jumps from 7 to
 *     143 ms is one iteration the loop could not serve: worth a look);
 *   - total stall time uses a floor of at least 3 x stall_ms: on a loaded
 *     machine one preempted iteration can look like a short stall;
 *   - loop threads are paired by role: the main thread with the main
 *     thread (two builds of one server may be named differently), the
 *     others by name and order of appearance, then the ones left in order;
 *     call sites by
 *     call name and the first frames of the project's own code (not by
 *     address or tid, which change from run to run). */
#include "cli.h"
#include "findings.h"
#include "json.h"
#include "sites.h"
#include "stacks.h"
#include "trace.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define USAGE "usage: asyncshim diff [--tolerance PCT] [--floor-ms N] [--json] BASE NEW"
#define DEFAULT_TOLERANCE 25.0

enum { BASE, NEW };

struct rules {
	double tolerance;       /* percent */
	uint64_t floor_ns;
	uint64_t stall_floor_ns;
};

struct loop_side {
	const struct thread_info *t;    /* NULL: not in this trace */
};

struct loop_row {
	char name[80];
	struct loop_side side[2];
	int regressed[4];               /* p50, p95, p99, max */
};

struct site_row {
	char call[32];
	char site[768];
	struct site_stack stack;        /* of the longest call, for --json */
	uint64_t count[2], total_ns[2], max_ns[2];
	uint64_t max_first[2];          /* record number of the first call of max_ns */
	int regressed;
	const char *reason;
};

struct stall_side {
	uint64_t count, total_ns;
};

struct diff {
	struct trace tr[2];
	struct rules rules;
	struct loop_row *loops;
	size_t nloops;
	struct site_row *sites;
	size_t nsites;
	struct stall_side stalls[2];
	int stall_regressed;
	unsigned regressions;
};

static const double pcts[3] = { 50, 95, 99 };
static const char *const pct_names[4] = { "p50", "p95", "p99", "max" };

/* NEW - BASE in ms, without printing "-0.0" for a rounding-level change */
static double change_ms(uint64_t base, uint64_t now, double unit)
{
	double d = ms(now) - ms(base);
	return fabs(d) < unit / 2 ? 0.0 : d;
}

/* grew by more than the tolerance and by at least the floor */
static int grew(const struct rules *r, uint64_t floor_ns, uint64_t base, uint64_t now)
{
	if (now <= base)
		return 0;
	uint64_t d = now - base;
	return (double)d > (double)base * r->tolerance / 100.0 && d >= floor_ns;
}

static int regressed(const struct rules *r, uint64_t base, uint64_t now)
{
	return grew(r, r->floor_ns, base, now);
}

/* ---- pairing loop threads ---- */

static void loop_key(const struct trace *tr, size_t idx, char *buf, size_t len)
{
	const struct thread_info *t = &tr->threads[idx];
	unsigned ord = 1;
	if (t->tid == tr->pid) {
		snprintf(buf, len, "main thread");
		return;
	}
	for (size_t i = 0; i < idx; i++)
		ord += tr->threads[i].loop && !strcmp(tr->threads[i].name, t->name);
	if (ord == 1)
		snprintf(buf, len, "%s", t->name[0] ? t->name : "?");
	else
		snprintf(buf, len, "%s#%u", t->name[0] ? t->name : "?", ord);
}

static int add_loops(struct diff *d, int side)
{
	const struct trace *tr = &d->tr[side];
	for (size_t i = 0; i < tr->nthreads; i++) {
		if (!tr->threads[i].loop || !tr->threads[i].lag.count)
			continue;
		char key[80];
		loop_key(tr, i, key, sizeof(key));
		struct loop_row *row = NULL;
		for (size_t j = 0; j < d->nloops && !row; j++)
			if (!strcmp(d->loops[j].name, key))
				row = &d->loops[j];
		if (!row) {
			struct loop_row *p = realloc(d->loops, (d->nloops + 1) * sizeof(*p));
			if (!p)
				return -1;
			d->loops = p;
			row = &d->loops[d->nloops++];
			memset(row, 0, sizeof(*row));
			snprintf(row->name, sizeof(row->name), "%s", key);
		}
		row->side[side].t = &tr->threads[i];
	}
	return 0;
}

/* Loops only in BASE and loops only in NEW: paired in order (renamed
 * threads of one program), "base-name / new-name". */
static void pair_leftovers(struct diff *d)
{
	size_t j = 0;
	for (size_t i = 0; i < d->nloops; i++) {
		struct loop_row *b = &d->loops[i];
		if (!b->side[BASE].t || b->side[NEW].t)
			continue;
		while (j < d->nloops && (d->loops[j].side[BASE].t || !d->loops[j].side[NEW].t))
			j++;
		if (j == d->nloops)
			return;
		struct loop_row *n = &d->loops[j];
		char name[sizeof(b->name)];
		snprintf(name, sizeof(name), "%.38s / %.38s", b->name, n->name);
		memcpy(b->name, name, sizeof(name));
		b->side[NEW] = n->side[NEW];
		n->side[NEW].t = NULL;          /* empty now: dropped below */
	}
	size_t k = 0;
	for (size_t i = 0; i < d->nloops; i++)
		if (d->loops[i].side[BASE].t || d->loops[i].side[NEW].t)
			d->loops[k++] = d->loops[i];
	d->nloops = k;
}

/* ---- aggregating call sites ---- */

/* From the sums per call, fd kind and stack (every call, in the order first
 * seen: rows come in the order of their first call).  A row's stack is that
 * of its first call of the longest duration, BASE before NEW. */
static int add_sites(struct diff *d, int side)
{
	struct trace *tr = &d->tr[side];
	struct block_site *const *raw;
	size_t n = trace_block_sites(tr, &raw);
	for (size_t i = 0; i < n; i++) {
		const struct block_site *b = raw[i];
		struct site_stack st;
		char site[768];
		site_stack(tr, b->stack, &st);
		site_label(&st, site, sizeof(site));
		struct site_row *row = NULL;
		for (size_t j = 0; j < d->nsites && !row; j++)
			if (!strcmp(d->sites[j].call, b->call) && !strcmp(d->sites[j].site, site))
				row = &d->sites[j];
		if (!row) {
			struct site_row *p = realloc(d->sites, (d->nsites + 1) * sizeof(*p));
			if (!p)
				return -1;
			d->sites = p;
			row = &d->sites[d->nsites++];
			memset(row, 0, sizeof(*row));
			snprintf(row->call, sizeof(row->call), "%s", b->call);
			snprintf(row->site, sizeof(row->site), "%s", site);
		}
		int best = b->max_ns > row->max_ns[side] ||
			   (b->max_ns == row->max_ns[side] && b->max_first < row->max_first[side]);
		if (best)
			row->max_first[side] = b->max_first;
		/* BASE's calls came first: NEW's stack only when longer than all of BASE's */
		if (best && b->max_ns > (side == NEW ? row->max_ns[BASE] : 0))
			row->stack = st;
		row->count[side] += b->count;
		row->total_ns[side] += b->total_ns;
		if (b->max_ns > row->max_ns[side])
			row->max_ns[side] = b->max_ns;
	}
	return 0;
}

static void add_stalls(struct diff *d, int side)
{
	d->stalls[side].count = d->tr[side].stalls_total;
	d->stalls[side].total_ns = d->tr[side].stalled_ns;
}

/* ---- judging ---- */

static void judge(struct diff *d)
{
	const struct rules *r = &d->rules;
	for (size_t i = 0; i < d->nloops; i++) {
		struct loop_row *l = &d->loops[i];
		if (!l->side[BASE].t || !l->side[NEW].t)
			continue;
		const struct hist *b = &l->side[BASE].t->lag, *n = &l->side[NEW].t->lag;
		for (int p = 0; p < 4; p++) {
			l->regressed[p] = p < 3 ? regressed(r, hist_percentile(b, pcts[p]), hist_percentile(n, pcts[p]))
						: regressed(r, b->max, n->max);
			d->regressions += (unsigned)l->regressed[p];
		}
	}
	for (size_t i = 0; i < d->nsites; i++) {
		struct site_row *s = &d->sites[i];
		if (s->count[NEW] && !s->count[BASE])
			s->reason = "new site";
		else if (regressed(r, s->total_ns[BASE], s->total_ns[NEW]))
			s->reason = s->count[NEW] > s->count[BASE] ? "more calls" : "slower";
		s->regressed = s->reason != NULL;
		d->regressions += (unsigned)s->regressed;
	}
	d->stall_regressed = grew(r, r->stall_floor_ns, d->stalls[BASE].total_ns, d->stalls[NEW].total_ns);
	d->regressions += (unsigned)d->stall_regressed;
}

/* ---- text ---- */

static void print_loops(const struct diff *d)
{
	printf("\nloop lag, ms %17s %12s %12s\n", "base", "new", "change");
	if (!d->nloops)
		printf("  (no loop threads)\n");
	for (size_t i = 0; i < d->nloops; i++) {
		const struct loop_row *l = &d->loops[i];
		if (!l->side[BASE].t || !l->side[NEW].t) {
			printf("  %-20s only in %s\n", l->name, l->side[BASE].t ? "base" : "new");
			continue;
		}
		const struct hist *b = &l->side[BASE].t->lag, *n = &l->side[NEW].t->lag;
		printf("  %-20s iterations %6" PRIu64 " %12" PRIu64 "\n", l->name, l->side[BASE].t->iterations,
		       l->side[NEW].t->iterations);
		for (int p = 0; p < 4; p++) {
			uint64_t vb = p < 3 ? hist_percentile(b, pcts[p]) : b->max;
			uint64_t vn = p < 3 ? hist_percentile(n, pcts[p]) : n->max;
			printf("  %-20s %-5s %10.3f %12.3f %+12.3f%s\n", "", pct_names[p], ms(vb), ms(vn),
			       change_ms(vb, vn, 0.001), l->regressed[p] ? "  REGRESSION" : "");
		}
	}
}

static void print_sites(const struct diff *d)
{
	printf("\nblocking calls by site %8s %6s %10s %10s %10s\n", "base n", "new n", "base ms", "new ms",
	       "change ms");
	if (!d->nsites)
		printf("  (no blocking calls)\n");
	for (size_t i = 0; i < d->nsites; i++) {
		const struct site_row *s = &d->sites[i];
		printf("  %-20s %8" PRIu64 " %6" PRIu64 " %10.1f %10.1f %+10.1f%s%s%s\n", s->call, s->count[BASE],
		       s->count[NEW], ms(s->total_ns[BASE]), ms(s->total_ns[NEW]),
		       change_ms(s->total_ns[BASE], s->total_ns[NEW], 0.1), s->regressed ? "  REGRESSION (" : "",
		       s->regressed ? s->reason : "", s->regressed ? ")" : "");
		printf("      at %s\n", s->site[0] ? s->site : "(no stack in the trace)");
	}
}

static void print_text(const struct diff *d)
{
	printf("asyncshim diff: base %s (pid %" PRId64 "), new %s (pid %" PRId64 ")\n", d->tr[BASE].path,
	       d->tr[BASE].pid, d->tr[NEW].path, d->tr[NEW].pid);
	printf("a value regresses when it grows by more than %g%% and by at least %.1f ms (stall time: %.1f ms); "
	       "a new blocking call site always does\n", d->rules.tolerance, ms(d->rules.floor_ns),
	       ms(d->rules.stall_floor_ns));
	print_loops(d);
	print_sites(d);
	printf("\nstalls %23" PRIu64 " %6" PRIu64 " %10.1f %10.1f %+10.1f%s\n", d->stalls[BASE].count,
		       d->stalls[NEW].count, ms(d->stalls[BASE].total_ns), ms(d->stalls[NEW].total_ns),
		       change_ms(d->stalls[BASE].total_ns, d->stalls[NEW].total_ns, 0.1),
		       d->stall_regressed ? "  REGRESSION" : "");
	if (d->regressions)
		printf("\nasyncshim diff: %u regression%s\n", d->regressions, d->regressions == 1 ? "" : "s");
	else
		printf("\nasyncshim diff: no regression\n");
}

/* ---- JSON ---- */

static void json_lag(FILE *f, const struct thread_info *t)
{
	if (!t) {
		fputs("null", f);
		return;
	}
	fprintf(f, "{\"tid\":%" PRId64 ",\"iterations\":%" PRIu64, t->tid, t->iterations);
	for (int p = 0; p < 3; p++) {
		fprintf(f, ",\"%s\":", pct_names[p]);
		json_ms(f, hist_percentile(&t->lag, pcts[p]));
	}
	fputs(",\"max\":", f);
	json_ms(f, t->lag.max);
	fputc('}', f);
}

static void json_frames(FILE *f, const struct site_stack *st)
{
	fputc('[', f);
	for (size_t i = site_first_own(st) < st->n ? site_first_own(st) : 0, k = 0; i < st->n; i++, k++) {
		const struct site_frame *fr = &st->frames[i];
		fputs(k ? ",{\"function\":" : "{\"function\":", f);
		json_str(f, fr->function);
		fputs(",\"module\":", f);
		json_str(f, fr->module);
		fputs(",\"file\":", f);
		json_str(f, fr->file);
		if (fr->line > 0)
			fprintf(f, ",\"line\":%d}", fr->line);
		else
			fputs(",\"line\":null}", f);
	}
	fputc(']', f);
}

static void json_site_side(FILE *f, const struct site_row *s, int side)
{
	fprintf(f, "{\"count\":%" PRIu64 ",\"total_ms\":", s->count[side]);
	json_ms(f, s->total_ns[side]);
	fputs(",\"max_ms\":", f);
	json_ms(f, s->max_ns[side]);
	fputc('}', f);
}

static void print_json(const struct diff *d)
{
	fputs("{\"base\":", stdout);
	json_str(stdout, d->tr[BASE].path);
	fputs(",\"new\":", stdout);
	json_str(stdout, d->tr[NEW].path);
	printf(",\"tolerance_pct\":%g,\"floor_ms\":", d->rules.tolerance);
	json_ms(stdout, d->rules.floor_ns);
	fputs(",\"stall_floor_ms\":", stdout);
	json_ms(stdout, d->rules.stall_floor_ns);
	fputs(",\"loops\":[", stdout);
	for (size_t i = 0; i < d->nloops; i++) {
		const struct loop_row *l = &d->loops[i];
		fputs(i ? ",{\"loop\":" : "{\"loop\":", stdout);
		json_str(stdout, l->name);
		fputs(",\"base\":", stdout);
		json_lag(stdout, l->side[BASE].t);
		fputs(",\"new\":", stdout);
		json_lag(stdout, l->side[NEW].t);
		fputs(",\"regressions\":[", stdout);
		for (int p = 0, k = 0; p < 4; p++)
			if (l->regressed[p])
				printf("%s\"%s\"", k++ ? "," : "", pct_names[p]);
		fputs("]}", stdout);
	}
	fputs("],\"sites\":[", stdout);
	for (size_t i = 0; i < d->nsites; i++) {
		const struct site_row *s = &d->sites[i];
		fputs(i ? ",{\"call\":" : "{\"call\":", stdout);
		json_str(stdout, s->call);
		fputs(",\"site\":", stdout);
		json_str(stdout, s->site);
		fputs(",\"frames\":", stdout);
		json_frames(stdout, &s->stack);
		fputs(",\"base\":", stdout);
		json_site_side(stdout, s, BASE);
		fputs(",\"new\":", stdout);
		json_site_side(stdout, s, NEW);
		printf(",\"regression\":%s,\"reason\":", s->regressed ? "true" : "false");
		json_str(stdout, s->reason);
		fputc('}', stdout);
	}
	fputs("],\"stalls\":{", stdout);
	for (int side = BASE; side <= NEW; side++) {
		printf("%s\"%s\":{\"count\":%" PRIu64 ",\"total_ms\":", side ? "," : "", side ? "new" : "base",
		       d->stalls[side].count);
		json_ms(stdout, d->stalls[side].total_ns);
		fputc('}', stdout);
	}
	printf(",\"regression\":%s},\"regressions\":%u}\n", d->stall_regressed ? "true" : "false", d->regressions);
}

/* ---- the command ---- */

static int parse_number(const char *s, double *out)
{
	char *end;
	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	double v = strtod(s, &end);
	if (*end || !isfinite(v) || v < 0 || v > 1e9)
		return -1;
	*out = v;
	return 0;
}

static int bad_value(const char *opt, const char *v, const char *want)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "bad value '%.64s' for %s (want %s)", v, opt, want);
	return usage_error("diff", msg);
}

int cmd_diff(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "tolerance", required_argument, NULL, 't' },
		{ "floor-ms", required_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, json = 0;
	double floor_ms = -1;
	struct diff d;
	memset(&d, 0, sizeof(d));
	d.rules.tolerance = DEFAULT_TOLERANCE;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		if (c == 't' && parse_number(optarg, &d.rules.tolerance) != 0)
			return bad_value("--tolerance", optarg, "a percentage >= 0");
		if (c == 'f' && parse_number(optarg, &floor_ms) != 0)
			return bad_value("--floor-ms", optarg, "a number of ms >= 0");
		if (c == 'j')
			json = 1;
		if (c == 'h') {
			printf("%s\n", USAGE);
			return 0;
		}
		if (c == '?' || c == ':') {
			char msg[512];
			snprintf(msg, sizeof(msg), "unknown option or missing value '%.64s'; %s", argv[optind - 1], USAGE);
			return usage_error("diff", msg);
		}
	}
	if (argc - optind != 2)
		return usage_error("diff", USAGE);
	int rc = 0, loaded = 0;
	char err[512];
	for (; rc == 0 && loaded < 2; loaded++) {
		/* sums per site are all it needs: no call kept one by one */
		if (trace_load_keep(argv[optind + loaded], &d.tr[loaded], 0, err, sizeof(err)) != 0) {
			fprintf(stderr, "asyncshim diff: %s: %s\n", argv[optind + loaded], err);
			rc = 2;
		}
	}
	if (rc == 0) {
		uint64_t block_ms = d.tr[BASE].block_ms > d.tr[NEW].block_ms ? d.tr[BASE].block_ms : d.tr[NEW].block_ms;
		uint64_t stall_ms = d.tr[BASE].stall_ms > d.tr[NEW].stall_ms ? d.tr[BASE].stall_ms : d.tr[NEW].stall_ms;
		d.rules.floor_ns = floor_ms >= 0 ? (uint64_t)(floor_ms * 1e6) : block_ms * 1000000u;
		d.rules.stall_floor_ns = floor_ms >= 0 ? d.rules.floor_ns : 3 * stall_ms * 1000000u;
		add_stalls(&d, BASE);
		add_stalls(&d, NEW);
		if (add_loops(&d, BASE) || add_loops(&d, NEW) || add_sites(&d, BASE) || add_sites(&d, NEW)) {
			fprintf(stderr, "asyncshim diff: out of memory\n");
			rc = 2;
		} else {
			pair_leftovers(&d);
		}
	}
	if (rc == 0) {
		judge(&d);
		if (json)
			print_json(&d);
		else
			print_text(&d);
		rc = d.regressions ? 1 : 0;
	}
	for (int i = 0; i < loaded; i++)
		trace_free(&d.tr[i]);
	free(d.loops);
	free(d.sites);
	return rc;
}
