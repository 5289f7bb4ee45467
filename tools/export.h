/* export.h — the formats of `asyncshim export --format NAME`.
 *
 * export.c opens nothing itself: each format takes the traces as sources
 * (trace.h), opened on their first pass and never again, and passes over
 * them as it needs (trace_pass, or trace_load_src for the summary model),
 * so memory stays bounded by the number of threads and distinct stacks,
 * not events.  Returns 0, or -1 with a one-line reason in err (nothing
 * useful written). */
#ifndef ASYNCSHIM_EXPORT_H
#define ASYNCSHIM_EXPORT_H

#include <stddef.h>
#include <stdio.h>

struct trace_src;

typedef int (*export_fn)(FILE *out, struct trace_src *srcs, int n, char *err, size_t errlen);

/* Chrome trace-event JSON (Perfetto UI, chrome://tracing) — chrome.c */
int export_chrome(FILE *out, struct trace_src *srcs, int n, char *err, size_t errlen);

/* Folded stacks (flamegraph.pl, speedscope) weighted by blocked and
 * stalled microseconds — folded.c */
int export_folded(FILE *out, struct trace_src *srcs, int n, char *err, size_t errlen);

#endif
