/* overhead.c — what the shim costs the program, estimated by the shim.
 *
 * The hot path cannot time itself without costing more, so the cost is
 * counted and multiplied: once, on the collector thread at start, the
 * collector times the hot path's pieces on this machine (two clock reads
 * and a compare per timed call; one ring record); then
 * it counts, per drain, what the loop threads did — calls timed (each loop
 * thread publishes its count at every iteration), records written — and
 * adds what the slow paths measured themselves: stack captures of blocking
 * calls (timed in as_blocking) and stall samples (each sample record carries
 * its handler's time).  Cumulative spans write one record for many runs:
 * their runs are counted from that record's count and priced by a timing
 * of the span entry points at start (as_span_cumulative_ns); bindings that
 * pay more than the shim for a span (Python's ctypes calls) time themselves
 * and add it (asyncshim_overhead, as_thread.api_ns).  Stack capture is not timed here: libunwind's
 * per-thread state would outlive the collector thread.  The collector's own CPU time is read
 * from its thread clock.  Written as an `overhead` record with every flush
 * (cumulative; the last one counts).  An estimate: cache misses the shim
 * causes in the program's own code are not in it. */
#include "../preload/ctl.h"
#include "../preload/span.h"
#include "../format/pack.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double call_ns, record_ns, span_ns;
static uint64_t calls, records, stacks, stack_ticks, sampling_ns, other_records, busy_ticks;
static uint64_t cumulative_runs, api_ns;
static clockid_t collector_clock;
static int clock_ok;

static uint64_t now_ns(void)
{
	return as_mono_ns();
}

/* ns per round of FN, the best of a few tries (the machine is shared). */
static double best_ns(void (*fn)(void *, unsigned), void *arg, unsigned n)
{
	double best = 1e18;
	for (int k = 0; k < 5; k++) {
		uint64_t t0 = now_ns();
		fn(arg, n);
		double d = (double)(now_ns() - t0) / n;
		best = d < best ? d : best;
	}
	return best;
}

static void timed_calls(void *arg, unsigned n)
{
	volatile uint64_t sink = 0;
	uint64_t limit = *(uint64_t *)arg;
	int tsc = as_use_tsc;
	for (unsigned i = 0; i < n; i++) {
		uint64_t t0 = as_clock(tsc), t1 = as_clock(tsc);
		if (t1 - t0 >= limit)
			sink = sink + 1;
	}
	(void)sink;
}

static void ring_records(void *arg, unsigned n)
{
	struct as_thread *t = arg;
	for (unsigned i = 0; i < n; i++) {
		struct as_record *r = as_reserve(t);
		if (r) {
			r->kind = AS_REC_ITER;
			r->ts = as_now();
			r->dur = i;
			as_commit(t);
		}
		t->tail = t->head;
	}
}

/* On the collector thread, each time it starts; the calibration once. */
void as_overhead_start(void)
{
	static int calibrated;
	clock_ok = pthread_getcpuclockid(pthread_self(), &collector_clock) == 0;
	if (calibrated++)
		return;
	uint64_t limit = UINT64_MAX;
	call_ns = best_ns(timed_calls, &limit, 2000);
	size_t cap = 1024, size = sizeof(struct as_thread) + cap * sizeof(struct as_record);
	struct as_thread *t = aligned_alloc(64, (size + 63) & ~(size_t)63);
	if (!t)
		return;
	memset(t, 0, size);
	t->cap = cap;
	record_ns = best_ns(ring_records, t, 2000);
	free(t);
	span_ns = as_span_cumulative_ns();
}

/* ITERS_BUSY: the records are all iterations, this long together (ticks). */
void as_overhead_count(struct as_thread *t, uint64_t from, uint64_t to, const uint64_t *iters_busy)
{
	if (!CMM_LOAD_SHARED(t->is_loop)) {
		other_records += to - from;
		return;
	}
	uint64_t c = CMM_LOAD_SHARED(t->calls), s = CMM_LOAD_SHARED(t->stack_ticks), a = CMM_LOAD_SHARED(t->api_ns);
	if (a > t->c_api_seen) {
		api_ns += a - t->c_api_seen;
		t->c_api_seen = a;
	}
	if (c > t->c_calls_seen) {
		calls += c - t->c_calls_seen;
		t->c_calls_seen = c;
	}
	if (s > t->c_stack_seen) {
		stack_ticks += s - t->c_stack_seen;
		t->c_stack_seen = s;
	}
	if (iters_busy) {
		records += to - from;
		busy_ticks += *iters_busy;
		return;
	}
	for (uint64_t i = from; i < to; i++) {
		const struct as_record *r = &t->ring[i & (t->cap - 1)];
		switch (r->kind) {
		case AS_REC_FRAMES:
			break;          /* part of its stack's capture */
		case AS_REC_BLOCK:
			records++;
			stacks += r->stack > 0;
			break;
		case AS_REC_SAMPLE:
			sampling_ns += r->fd > 0 ? (uint64_t)r->fd : 0;
			break;
		case AS_REC_ITER:
			records++;
			busy_ticks += r->dur;   /* the loops' busy time, to compare with */
			break;
		case AS_REC_SPAN_CUMUL:
			records++;
			cumulative_runs += r->dur;
			break;
		default:
			records++;
			break;
		}
	}
}

static void kv_u64(msgpack_packer *pk, enum as_trace_key k, uint64_t v)
{
	as_pack_key(pk, k);
	msgpack_pack_uint64(pk, v);
}

static void kv_double(msgpack_packer *pk, enum as_trace_key k, double v)
{
	as_pack_key(pk, k);
	msgpack_pack_double(pk, v);
}

void as_overhead_pack(msgpack_packer *pk)
{
	uint64_t cpu = 0;
	struct timespec ts;
	if (clock_ok && clock_gettime(collector_clock, &ts) == 0)
		cpu = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	uint64_t busy = as_use_tsc ? (uint64_t)((double)busy_ticks * as_ns_per_tick) : busy_ticks;
	uint64_t stack_ns = as_use_tsc ? (uint64_t)((double)stack_ticks * as_ns_per_tick) : stack_ticks;
	double est = (double)calls * call_ns + (double)records * record_ns + (double)stack_ns + (double)sampling_ns +
		     (double)cumulative_runs * span_ns + (double)api_ns;
	msgpack_pack_map(pk, 17);
	as_pack_type(pk, AS_T_overhead);
	kv_u64(pk, AS_K_t, as_mono_ns() - as_mono0);
	kv_u64(pk, AS_K_calls, calls);
	kv_u64(pk, AS_K_records, records);
	kv_u64(pk, AS_K_stacks, stacks);
	kv_double(pk, AS_K_call_ns, call_ns);
	kv_double(pk, AS_K_record_ns, record_ns);
	kv_u64(pk, AS_K_stacks_ns, stack_ns);
	kv_u64(pk, AS_K_sampling_ns, sampling_ns);
	kv_u64(pk, AS_K_cumulative_runs, cumulative_runs);
	kv_double(pk, AS_K_cumulative_ns, span_ns);
	kv_u64(pk, AS_K_cumulative_total_ns, (uint64_t)((double)cumulative_runs * span_ns));
	kv_u64(pk, AS_K_binding_ns, api_ns);
	kv_u64(pk, AS_K_other_records, other_records);
	kv_u64(pk, AS_K_collector_cpu_ns, cpu);
	kv_u64(pk, AS_K_loop_ns, (uint64_t)est);
	kv_u64(pk, AS_K_loop_busy_ns, busy);
}

/* fork child: its counts start again (its collector thread is new) */
void as_overhead_reset(void)
{
	calls = records = stacks = stack_ticks = sampling_ns = other_records = busy_ticks = 0;
	cumulative_runs = api_ns = 0;
}
