/* findings.h — the blocking calls and stalls of a trace, in memory that
 * grows with the number of call sites, not with the number of calls.
 *
 * Every finding counts exactly: totals, and sums per site — a blocking call
 * by its call, fd kind and stack id; a stall sample by its stack id and by
 * its top frame (the report's stall sites).  One by one, only the KEEP
 * longest blocking calls and the KEEP longest stalls are held (a heap while
 * the trace is read; in the order recorded once it is loaded): tr->blocks
 * and trace_stalls().  trace_load keeps every one (check judges each);
 * trace_load_keep says how many.  Filled record by record from trace.c. */
#ifndef ASYNCSHIM_FINDINGS_H
#define ASYNCSHIM_FINDINGS_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "sites.h"
#include "trace.h"

/* Keep the MAX elements BEFORE ranks first, in a heap whose root is the
 * one to let go next (also for the spans' slowest requests). */
typedef int (*before_fn)(const void *a, const void *b);
int keep_offer(void **vp, size_t *n, size_t *cap, size_t max, size_t size, before_fn before, const void *elem,
	       void *out);

/* Every blocking call with one call, fd kind and stack. */
struct block_site {
	char call[32];
	char fd_kind[16];
	uint64_t stack;
	size_t index;                   /* in trace_block_sites(): the order first seen */
	uint64_t count, total_ns, max_ns;
	uint64_t max_first, max_last;   /* record number of the first and the last call of max_ns */
	uint64_t last;                  /* of its last call */
};

/* Stall samples of one top frame (findings_top_key): the report's stall sites. */
struct stall_site {
	char *key;
	const struct site_frame *top;   /* of the last sample seen */
	uint64_t top_off;
	uint64_t samples, total_ns;     /* each sample an equal share of its stall */
	uint64_t stalls;                /* stalls it was sampled in */
	uint64_t last_stall;
	uint64_t stack;                 /* the first sample's */
};

/* Stall time by sample stack: each sample an equal share of its stall. */
struct stall_share {
	uint64_t stack, samples, ns;
	struct stall_site *site;        /* NULL: the stack has no frames */
	const struct site_frame *top;
	uint64_t top_off;
};

/* From trace.c: one blocking call (its seq set), one stall record. */
int findings_block(struct trace *tr, const struct blocking *b);
int findings_stall(struct trace *tr, const msgpack_object *o, uint64_t seq, uint64_t *last_ns);
/* Once the whole trace is read: the kept ones in the order recorded. */
int findings_finish(struct trace *tr);
void findings_free(struct trace *tr);

/* Sites and shares, in the order first seen. */
size_t trace_block_sites(const struct trace *tr, struct block_site *const **v);
/* Site order: stack id, then call, then fd kind (what makes a site). */
int block_site_cmp(const void *a, const void *b);
const struct block_site *trace_block_site_of(const struct trace *tr, const struct blocking *b);
size_t trace_stall_sites(const struct trace *tr, struct stall_site *const **v);
size_t trace_stall_shares(const struct trace *tr, struct stall_share *const **v);
uint64_t trace_unsampled_ns(const struct trace *tr);      /* stalls without a sample */

/* The N longest of the kept blocking calls (stalls), in the order recorded:
 * *idx (malloc'd, free it) gets their indices in tr->blocks (trace_stalls()).
 * Returns how many, or (size_t)-1 when out of memory. */
size_t trace_listed_blocks(const struct trace *tr, size_t n, size_t **idx);
size_t trace_listed_stalls(const struct trace *tr, size_t n, size_t **idx);

/* The top frame of stack ID (the shim's own frames left out) as a grouping
 * key: "function|file|line", or "module+offset" without a name.  0 when the
 * stack has no frames. */
int findings_top_key(const struct trace *tr, uint64_t id, char *key, size_t len, const struct site_frame **top,
		     uint64_t *top_off);

#endif
