#include "hist.h"

#include <math.h>
#include <stdlib.h>

static unsigned bucket_of(uint64_t v)
{
	if (v < HIST_LINEAR)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);      /* >= SUB_BITS + 1 */
	unsigned shift = e - HIST_SUB_BITS;
	unsigned sub = (unsigned)(v >> shift) - (1u << HIST_SUB_BITS);
	return HIST_LINEAR + (e - HIST_SUB_BITS - 1) * (1u << HIST_SUB_BITS) + sub;
}

/* middle of the bucket's value range */
static uint64_t value_of(unsigned b)
{
	if (b < HIST_LINEAR)
		return b;
	unsigned k = b - HIST_LINEAR;
	unsigned e = k / (1u << HIST_SUB_BITS) + HIST_SUB_BITS + 1;
	unsigned sub = k % (1u << HIST_SUB_BITS);
	unsigned shift = e - HIST_SUB_BITS;
	uint64_t lo = ((uint64_t)(1u << HIST_SUB_BITS) + sub) << shift;
	return lo + (((uint64_t)1 << shift) >> 1);
}

int hist_add(struct hist *h, uint64_t v)
{
	if (!h->buckets) {
		h->buckets = calloc(HIST_BUCKETS, sizeof(*h->buckets));
		if (!h->buckets)
			return -1;
		h->min = UINT64_MAX;
	}
	h->buckets[bucket_of(v)]++;
	h->count++;
	h->sum += v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	return 0;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
	if (!h->count)
		return 0;
	uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
	if (rank < 1)
		rank = 1;
	if (rank >= h->count)
		return h->max;
	uint64_t seen = 0;
	for (unsigned b = 0; b < HIST_BUCKETS; b++) {
		seen += h->buckets[b];
		if (seen >= rank) {
			uint64_t v = value_of(b);
			return v < h->min ? h->min : v > h->max ? h->max : v;
		}
	}
	return h->max;
}

void hist_free(struct hist *h)
{
	free(h->buckets);
	h->buckets = NULL;
}
