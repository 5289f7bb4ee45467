/* hist.h — log-linear latency histogram (HDR style): exact count, sum, min
 * and max; percentiles within 0.4% (128 sub-buckets per power of two). */
#ifndef ASYNCSHIM_HIST_H
#define ASYNCSHIM_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_LINEAR (1u << (HIST_SUB_BITS + 1))           /* values below are exact */
#define HIST_BUCKETS (HIST_LINEAR + (64 - HIST_SUB_BITS - 1) * (1u << HIST_SUB_BITS))

struct hist {
	uint64_t count, sum, min, max;
	uint64_t *buckets;      /* HIST_BUCKETS, allocated on first add */
};

int hist_add(struct hist *h, uint64_t v);
/* nearest-rank percentile, p in [0, 100] */
uint64_t hist_percentile(const struct hist *h, double p);
void hist_free(struct hist *h);

#endif
