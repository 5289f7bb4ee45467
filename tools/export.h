/* export.h — the formats of `asyncshim export --format NAME`.
 *
 * Each format streams the traces itself (trace_stream) so memory stays
 * bounded by the number of threads and distinct stacks, not events.
 * Returns 0, or -1 with a one-line reason in err (nothing useful written). */
#ifndef ASYNCSHIM_EXPORT_H
#define ASYNCSHIM_EXPORT_H

#include <stddef.h>
#include <stdio.h>

typedef int (*export_fn)(FILE *out, char **paths, int npaths, char *err, size_t errlen);

/* Chrome trace-event JSON (Perfetto UI, chrome://tracing) — chrome.c */
int export_chrome(FILE *out, char **paths, int npaths, char *err, size_t errlen);

/* Folded stacks (flamegraph.pl, speedscope) weighted by blocked and
 * stalled microseconds — folded.c */
int export_folded(FILE *out, char **paths, int npaths, char *err, size_t errlen);

#endif
