/* report.c — `asyncshim report [--json] TRACE...`
 *
 * Blocking calls and stalls are listed one by one up to --list N (the
 * longest, in the order recorded), so a trace of any size is read in
 * bounded memory; counts, totals and sites count every one. */
#include "cli.h"
#include "findings.h"
#include "html.h"
#include "json.h"
#include "stacks.h"
#include "trace.h"
#include "tasks.h"
#include "spans.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static uint64_t trace_dropped(const struct trace *tr)
{
	uint64_t n = 0;
	for (size_t i = 0; i < tr->nthreads; i++)
		n += tr->threads[i].dropped;
	return n + tr->ringless_events;
}

static void json_lag(FILE *f, const struct hist *h)
{
	fputs("{\"min\":", f);
	json_ms(f, h->count ? h->min : 0);
	fputs(",\"avg\":", f);
	json_ms(f, h->count ? h->sum / h->count : 0);
	static const struct { const char *k; double p; } pct[] = {
		{ "p50", 50 }, { "p95", 95 }, { "p99", 99 },
	};
	for (size_t i = 0; i < 3; i++) {
		fprintf(f, ",\"%s\":", pct[i].k);
		json_ms(f, hist_percentile(h, pct[i].p));
	}
	fputs(",\"max\":", f);
	json_ms(f, h->max);
	fputc('}', f);
}

static void json_thread(FILE *f, const struct thread_info *t)
{
	fprintf(f, "{\"tid\":%" PRId64 ",\"name\":", t->tid);
	json_str(f, t->name);
	fprintf(f, ",\"loop\":%s,\"iterations\":%" PRIu64 ",\"busy_ms\":", t->loop ? "true" : "false",
		t->iterations);
	json_ms(f, t->busy_ns);
	fprintf(f, ",\"dropped_events\":%" PRIu64 ",\"lag_ms\":", t->dropped);
	json_lag(f, &t->lag);
	fputc('}', f);
}

static size_t top_sites = 10;     /* --top */
static size_t list_max = 1000;    /* --list, --all: blocking calls and stalls listed */

void json_blocking(FILE *f, const struct trace *tr, const struct blocking *b)
{
	fprintf(f, "{\"tid\":%" PRId64 ",\"call\":", b->tid);
	json_str(f, b->call);
	if (b->fd >= 0)
		fprintf(f, ",\"fd\":%d", b->fd);
	else
		fputs(",\"fd\":null", f);
	fputs(",\"fd_kind\":", f);
	json_str(f, b->fd_kind[0] ? b->fd_kind : NULL);
	fputs(",\"seen_by\":", f);
	json_str(f, b->seen_by[0] ? b->seen_by : "hook");
	fprintf(f, ",\"nested\":%s", b->nested ? "true" : "false");
	fputs(",\"at_ms\":", f);
	json_ms(f, b->t_ns);
	fputs(",\"duration_ms\":", f);
	json_ms(f, b->dur_ns);
	fputs(",\"stack\":", f);
	stacks_json_frames(f, tr, b->stack);
	spans_json_attr(f, tr, b->span, b->request);
	fputc('}', f);
}

/* The end record's count, or the thread records' when older or recovered */
static size_t trace_threads_seen(const struct trace *tr)
{
	return tr->threads_seen > tr->nthreads ? (size_t)tr->threads_seen : tr->nthreads;
}

static void json_trace(FILE *f, const struct trace *tr)
{
	fprintf(f, "{\"path\":");
	json_str(f, tr->path);
	fprintf(f, ",\"pid\":%" PRId64 ",\"ppid\":%" PRId64 ",\"exe\":", tr->pid, tr->ppid);
	json_str(f, tr->exe);
	fputs(",\"argv0\":", f);
	json_str(f, tr->argv0[0] ? tr->argv0 : NULL);
	fprintf(f, ",\"threads_seen\":%zu", trace_threads_seen(tr));
	if (tr->exit_status >= 0)
		fprintf(f, ",\"exit_status\":%" PRId64, tr->exit_status);
	fputs(",\"duration_ms\":", f);
	json_ms(f, tr->duration_ns);
	fprintf(f, ",\"complete\":%s,\"end_reason\":", tr->complete ? "true" : "false");
	json_str(f, tr->complete ? tr->end_reason : NULL);
	fprintf(f, ",\"block_ms\":%" PRIu64 ",\"dropped_events\":%" PRIu64, tr->block_ms, trace_dropped(tr));
	fprintf(f, ",\"ringless_threads\":%" PRIu64 ",\"lost_bytes\":%" PRIu64 ",\"lost_records\":%" PRIu64,
		tr->ringless_threads, tr->lost_bytes, tr->lost_records);
	fputs(",\"threads\":[", f);
	for (size_t i = 0; i < tr->nthreads; i++) {
		if (i)
			fputc(',', f);
		json_thread(f, &tr->threads[i]);
	}
	fputs("],\"blocking\":[", f);
	size_t *idx, n = trace_listed_blocks(tr, list_max, &idx);
	if (!idx)
		n = 0;
	for (size_t i = 0; i < n; i++) {
		if (i)
			fputc(',', f);
		json_blocking(f, tr, &tr->blocks[idx[i]]);
	}
	free(idx);
	fprintf(f, "],\"blocking_total\":%" PRIu64 ",\"blocking_listed\":%zu,\"blocking_total_ms\":",
		tr->blocks_total, n);
	json_ms(f, tr->blocked_ns);
	fputc(',', f);
	stacks_json(f, tr, top_sites, list_max);
	fputc(',', f);
	tasks_json(f, tr->tasks);
	fputc(',', f);
	spans_json(f, tr, json_blocking);
	fputc('}', f);
}

static const char *thread_name(const struct trace *tr, int64_t tid)
{
	for (size_t i = 0; i < tr->nthreads; i++)
		if (tr->threads[i].tid == tid)
			return tr->threads[i].name;
	return "?";
}

/* What was run, then the file that ran when they differ: redis-server is
 * a symlink to redis-check-rdb. */
static void text_program(FILE *f, const struct trace *tr)
{
	const char *a0 = tr->argv0, *exe = tr->exe;
	const char *base = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
	const char *abase = strrchr(a0, '/') ? strrchr(a0, '/') + 1 : a0;
	if (!a0[0] || !strcmp(abase, base))
		fputs(exe, f);
	else
		fprintf(f, "%s (%s)", a0, exe);
}

static void text_trace(FILE *f, const struct trace *tr)
{
	size_t loops = 0;
	for (size_t i = 0; i < tr->nthreads; i++)
		loops += tr->threads[i].loop;
	fprintf(f, "%s: pid %" PRId64 " ", tr->path, tr->pid);
	text_program(f, tr);
	fprintf(f, ", %.1f ms%s\n", ms(tr->duration_ns),
		tr->complete ? "" : " (no end record: the process died before its final flush)");
	if (tr->complete && tr->exit_status >= 0)
		fprintf(f, "ended by a raw exit_group with status %" PRId64 " (not the C library's exit: no atexit "
			   "handler or destructor ran); finished from its rings\n", tr->exit_status);
	fprintf(f, "\nloop threads: %zu of %zu threads seen\n", loops, trace_threads_seen(tr));
	if (loops) {
		fprintf(f, "  %-8s %-16s %10s %10s  %s\n", "tid", "name", "iterations", "busy ms",
			"lag ms: min / avg / p50 / p95 / p99 / max");
		for (size_t i = 0; i < tr->nthreads; i++) {
			const struct thread_info *t = &tr->threads[i];
			const struct hist *h = &t->lag;
			if (!t->loop)
				continue;
			fprintf(f, "  %-8" PRId64 " %-16s %10" PRIu64 " %10.1f  %.3f / %.3f / %.3f / %.3f / %.3f / %.3f\n",
				t->tid, t->name, t->iterations, ms(t->busy_ns), ms(h->count ? h->min : 0),
				ms(h->count ? h->sum / h->count : 0), ms(hist_percentile(h, 50)),
				ms(hist_percentile(h, 95)), ms(hist_percentile(h, 99)), ms(h->max));
		}
	}
	size_t *idx, n = trace_listed_blocks(tr, list_max, &idx);
	if (!idx)
		n = 0;
	fprintf(f, "\nblocking calls on loop threads (>= %" PRIu64 " ms): %" PRIu64 ", %.1f ms in total\n",
		tr->block_ms, tr->blocks_total, ms(tr->blocked_ns));
	if (n)
		fprintf(f, "  %10s  %-8s %-16s %-16s %5s %-7s %12s\n", "at ms", "tid", "thread", "call", "fd",
			"kind", "duration ms");
	for (size_t i = 0; i < n; i++) {
		const struct blocking *b = &tr->blocks[idx[i]];
		char fd[16] = "-";
		if (b->fd >= 0)
			snprintf(fd, sizeof(fd), "%d", b->fd);
		fprintf(f, "  %10.1f  %-8" PRId64 " %-16s %-16s %5s %-7s %12.1f%s\n", ms(b->t_ns), b->tid,
			thread_name(tr, b->tid), b->call, fd, b->fd_kind[0] ? b->fd_kind : "-", ms(b->dur_ns),
			!strcmp(b->seen_by, "watchdog") ? "  (found waiting in the kernel: no hook timed it)"
			: b->nested ? "  (a nested loop: a wait on another epoll fd)" : "");
	}
	free(idx);
	if (tr->blocks_total > n)
		fprintf(f, "  ... %" PRIu64 " more blocking calls not listed, none longer than those above "
			   "(--all to list every one)\n", tr->blocks_total - n);
	stacks_text(f, tr, top_sites, list_max);
	tasks_text(f, tr->tasks, tr->block_ms);
	spans_text(f, tr);
	fprintf(f, "\ndropped events: %" PRIu64 "%s\n", trace_dropped(tr),
		trace_dropped(tr) ? " (buffers were full: raise buffer_kb)" : "");
	if (tr->ringless_threads)
		fprintf(f, "threads without a buffer: %" PRIu64 " (no memory for one; their %" PRIu64
			   " events are counted as dropped)\n", tr->ringless_threads, tr->ringless_events);
	if (tr->lost_bytes)
		fprintf(f, "lost writes: %" PRIu64 " records (%" PRIu64 " bytes) never reached the trace file "
			   "(a write failed: disk full?)\n", tr->lost_records, tr->lost_bytes);
}

/* --list N: a count, 0 included */
static int parse_list(const char *s)
{
	char *end;
	if (*s < '0' || *s > '9')
		return -1;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || v > 1ul << 30)
		return -1;
	list_max = v;
	return 0;
}

#define REPORT_USAGE "usage: asyncshim report [--json] [--html FILE] [--top N] [--list N | --all] TRACE..."

int cmd_report(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "html", required_argument, NULL, 'H' },
		{ "top", required_argument, NULL, 't' },
		{ "list", required_argument, NULL, 'l' },
		{ "all", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int json = 0, c;
	const char *html = NULL;
	optind = 1;
	list_max = 1000;
	while ((c = getopt_long(argc, argv, "jH:t:l:ah", longopts, NULL)) != -1) {
		char *end;
		if (c == 'j')
			json = 1;
		else if (c == 't' && (top_sites = strtoul(optarg, &end, 10)) > 0 && !*end && optarg[0] != '-')
			continue;
		else if (c == 'l' && parse_list(optarg) == 0)
			continue;
		else if (c == 'a')
			list_max = TRACE_KEEP_ALL;
		else if (c == 'H')
			html = optarg;
		else
			return usage_error("report", REPORT_USAGE);
	}
	if (optind >= argc)
		return usage_error("report", REPORT_USAGE);
	/* the page draws more of the longest blocking calls than are listed */
	size_t keep = html && list_max < HTML_BLOCKS_KEPT ? HTML_BLOCKS_KEPT : list_max;
	struct trace *trs = calloc((size_t)(argc - optind), sizeof(*trs));
	int n = 0, rc = 0;
	for (int i = optind; i < argc; i++, n++) {
		char err[256];
		if (trace_load_keep(argv[i], &trs[n], keep, err, sizeof(err)) != 0) {
			fprintf(stderr, "asyncshim report: %s: %s\n", argv[i], err);
			rc = 2;
			n++;
			break;
		}
		if (!html)
			trace_release(&trs[n]);
	}
	if (rc == 0 && html) {
		char err[512];
		if (html_report(html, trs, n, err, sizeof(err)) != 0) {
			fprintf(stderr, "asyncshim report: %s\n", err);
			rc = 2;
		}
	}
	if (rc == 0) {
		if (json) {
			fputs("{\"traces\":[", stdout);
			for (int i = 0; i < n; i++) {
				if (i)
					fputc(',', stdout);
				json_trace(stdout, &trs[i]);
			}
			fputs("]}\n", stdout);
		} else {
			for (int i = 0; i < n; i++) {
				if (i)
					fputs("\n", stdout);
				text_trace(stdout, &trs[i]);
			}
		}
	}
	for (int i = 0; i < n; i++)
		trace_free(&trs[i]);
	free(trs);
	return rc;
}
