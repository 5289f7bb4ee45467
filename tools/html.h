/* html.h — `asyncshim report --html FILE`: one self-contained HTML page.
 *
 * The page (tools/html_template.html, embedded at build time) draws what
 * html.c writes into it as JSON: summary numbers, a lag histogram, a
 * timeline of loop iterations with blocking calls, stalls and tasks, the
 * top blocking call sites with their stacks, and the task tree.  The data is
 * bounded whatever the trace size: long threads are drawn from time
 * buckets, and the page says so. */
#ifndef ASYNCSHIM_HTML_H
#define ASYNCSHIM_HTML_H

#include <stddef.h>

#include "trace.h"

/* Blocking calls the page draws one by one (the longest): TRS must keep at
 * least this many (trace_load_keep). */
#define HTML_BLOCKS_KEPT 20000

/* Write the page for TRS (already loaded) to PATH; the timeline takes a
 * second pass over each trace's open file (trs[i].src), never reopened.  Returns 0, or -1 with a one-line reason in err. */
int html_report(const char *path, struct trace *trs, int n, char *err, size_t errlen);

#endif
