/* progress.h — a one-line progress indicator on stderr for long reads.
 *
 * Shown only when stderr is a terminal and the input is large, so pipes,
 * logs and tests see nothing.  trace_stream() drives it; a command that
 * writes to the same terminal while streaming calls progress_quiet(). */
#ifndef ASYNCSHIM_PROGRESS_H
#define ASYNCSHIM_PROGRESS_H

#include <stdint.h>

/* inputs smaller than this finish too fast to need a progress line */
#define PROGRESS_MIN_BYTES (8u << 20)

void progress_quiet(void);
void progress_begin(const char *label, uint64_t total_bytes);
void progress_update(uint64_t done_bytes);
void progress_end(void);

#endif
