/* junit.c — `asyncshim check --junit FILE`: the verdict as JUnit XML, one
 * testcase per check, so CI dashboards (GitLab, Jenkins, GitHub test
 * reporters) list each failed check with its call sites and stacks. */
#include "check.h"
#include "outfile.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

/* Text and attribute values; characters XML 1.0 forbids become '?'. */
static void xml_text(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		switch (c) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&apos;", f); break;
		default:
			fputc(c < 0x20 && c != '\n' && c != '\t' ? '?' : c, f);
		}
	}
}

static void group_body(FILE *f, const struct group *g)
{
	char line[1024];
	const struct finding *w = g->worst;
	group_line(g, line, sizeof(line));
	xml_text(f, line);
	fputs("\n  at ", f);
	xml_text(f, w->site[0] ? w->site : "(no stack in the trace)");
	fputc('\n', f);
	for (size_t i = 0; i < w->stack.n; i++) {
		site_frame_text(&w->stack.frames[i], line, sizeof(line));
		fprintf(f, "    #%zu ", i);
		xml_text(f, line);
		fputc('\n', f);
	}
	fputs("  trace: ", f);
	xml_text(f, w->tr->path);
	fputs("\n\n", f);
}

static void failure_body(FILE *f, const struct check_result *r, enum check_id id)
{
	if (id == CHECK_LAG_P99) {
		for (size_t i = 0; i < r->nlags; i++) {
			const struct lag_violation *l = &r->lags[i];
			char line[1024];
			snprintf(line, sizeof(line), "loop thread %s (tid %" PRId64 ", pid %" PRId64 "): p99 lag %.1f ms, "
				 "max %.1f ms, %" PRIu64 " iterations\n  trace: %s\n\n", l->thread->name, l->thread->tid,
				 l->tr->pid, (double)l->p99_ns / 1e6, (double)l->thread->lag.max / 1e6,
				 l->thread->iterations, l->tr->path);
			xml_text(f, line);
		}
		return;
	}
	for (size_t i = 0; i < r->ngroups; i++)
		if (r->groups[i].check == id)
			group_body(f, &r->groups[i]);
}

static void testcase(FILE *f, const struct check_result *r, enum check_id id)
{
	char name[128], sum[256];
	snprintf(name, sizeof(name), "%s %g", check_name(id), r->limit[id]);
	fputs("    <testcase classname=\"asyncshim.check\" name=\"", f);
	xml_text(f, name);
	if (!r->violations[id]) {
		fputs("\" time=\"0\"/>\n", f);
		return;
	}
	check_summary(r, id, sum, sizeof(sum));
	fputs("\" time=\"0\">\n      <failure type=\"", f);
	xml_text(f, check_name(id));
	fputs("\" message=\"", f);
	xml_text(f, sum);
	fputs("\">", f);
	failure_body(f, r, id);
	fputs("</failure>\n    </testcase>\n", f);
}

static void properties(FILE *f, const struct check_result *r)
{
	fputs("    <properties>\n", f);
	for (size_t i = 0; i < r->ntraces; i++) {
		fputs("      <property name=\"trace\" value=\"", f);
		xml_text(f, r->traces[i].path);
		fputs("\"/>\n", f);
	}
	fputs("    </properties>\n", f);
}

static void suppressions(FILE *f, const struct as_sup *sup)
{
	if (!sup->n)
		return;
	fputs("    <system-out>suppressions:\n", f);
	for (size_t i = 0; i < sup->n; i++) {
		char line[512];
		snprintf(line, sizeof(line), "  %s:%u  %s  %" PRIu64 " suppressed%s\n", sup->rules[i].file,
			 sup->rules[i].line, sup->rules[i].text, sup->rules[i].hits,
			 sup->rules[i].hits ? "" : " (warning: matched nothing)");
		xml_text(f, line);
	}
	fputs("</system-out>\n", f);
}

int junit_write(const char *path, const struct check_result *r, char *err, size_t errlen)
{
	struct outfile of;
	char cerr[512];
	if (outfile_open(&of, path, cerr, sizeof(cerr)) != 0) {
		snprintf(err, errlen, "JUnit file: %s", cerr);
		return -1;
	}
	FILE *f = of.f;
	int tests = 0, failures = 0;
	for (int id = 0; id < CHECK_COUNT; id++) {
		tests += r->enabled[id];
		failures += r->enabled[id] && r->violations[id];
	}
	fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", f);
	fprintf(f, "<testsuites name=\"asyncshim check\" tests=\"%d\" failures=\"%d\" errors=\"0\">\n", tests,
		failures);
	fprintf(f, "  <testsuite name=\"asyncshim check\" tests=\"%d\" failures=\"%d\" errors=\"0\" skipped=\"0\">\n",
		tests, failures);
	properties(f, r);
	for (int id = 0; id < CHECK_COUNT; id++)
		if (r->enabled[id])
			testcase(f, r, (enum check_id)id);
	suppressions(f, r->sup);
	fputs("  </testsuite>\n</testsuites>\n", f);
	if (outfile_close(&of, 1, cerr, sizeof(cerr)) != 0) {
		snprintf(err, errlen, "JUnit file: %s", cerr);
		return -1;
	}
	return 0;
}
