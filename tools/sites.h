/* sites.h — call sites of findings, shared by `check` and `diff`.
 *
 * A finding's stack is turned into symbolized frames; the "site" is the
 * first frames of the project's own code (not the shim, not libc, not a
 * system library), which is what a developer wants to see and what stays
 * the same between two runs of one program (addresses and stack ids do not). */
#ifndef ASYNCSHIM_SITES_H
#define ASYNCSHIM_SITES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "trace.h"
#include "../format/suppress.h"

#define SITE_FRAMES 3      /* own frames that name a site */

struct site_frame {
	const char *function;   /* NULL when unknown */
	const char *module;     /* NULL when unknown */
	const char *file;       /* NULL when unknown */
	int line;               /* 0 when unknown */
	uint64_t offset;        /* in its module (the file's address) */
};

struct site_stack {
	struct site_frame *frames;   /* innermost first; owned by the stack cache */
	size_t n;
};

/* Symbolized frames of stack STACK_ID of TR (0 or unknown: no frames). */
void site_stack(struct trace *tr, uint64_t stack_id, struct site_stack *out);

/* Frames for the suppression matcher; FR must hold st->n entries. */
void site_sup_frames(const struct site_stack *st, struct as_sup_frame *fr);

/* Index of the first own frame, or st->n when none: the frames shown. */
size_t site_first_own(const struct site_stack *st);

/* "slow_sleep loop.c:40 < handle_tick loop.c:62" : up to SITE_FRAMES own
 * frames (any frames when none is the project's), or "" without a stack. */
void site_label(const struct site_stack *st, char *buf, size_t len);

/* One frame as every report shows it: "slow_sleep (loop.c:41)",
 * "memcpy [libc.so.6]", or "nginx+0x76e8b" when no symbol names it. */
void site_frame_name(const struct site_frame *f, char *buf, size_t len);

/* One frame as "function file:line (module)" (site_frame_name without a line). */
void site_frame_text(const struct site_frame *f, char *buf, size_t len);

#endif
