/* stacks.c — interning stacks and telling stalls, on the collector thread.
 *
 * Stacks: the FRAMES records behind a BLOCK or SAMPLE record (see
 * preload/stack.c) are looked up in a liburcu lock-free hash table (only this
 * thread uses it; the table never shrinks).  Each distinct stack gets a
 * dense id from 1 and is written to the trace once per file, as
 * {"type":"stack","id":N,"frames":[...]}, just before the first record that
 * uses it.  At most MAX_STACKS distinct stacks: later new ones are left out
 * (their findings get stack 0).
 *
 * Stalls: an iteration whose duration minus the blocking calls recorded in
 * it is >= stall_ms.  In ring order the blocking calls and samples of an
 * iteration come before its ITER record (written when the loop waits
 * again), so per thread we add up blocking time and keep the samples
 * whose iteration start matches, and decide at the ITER record.  Kept
 * samples are capped at AS_STALL_SAMPLES per stall (the count of all is
 * written too).  Like its lag, the iteration a thread is in when the process
 * ends is not judged. */
#include "stacks.h"
#include "../preload/span.h"
#include "../format/pack.h"

#include <stdlib.h>
#include <string.h>
#include <urcu-bp.h>
#include <urcu/rculfhash.h>

#define MAX_STACKS 100000

struct stack_node {
	struct cds_lfht_node node;
	uint32_t id, n;
	int gen;                 /* file generation it was written in */
	uint64_t pcs[];
};

struct stack_key {
	const uint64_t *pcs;
	uint32_t n;
};

static struct cds_lfht *table;
static struct stack_node **by_id;      /* by_id[id - 1 - id_base] */
static uint32_t nstacks, cap_ids;
static uint32_t id_base;               /* ids a killed process already wrote */
static int file_gen;

static unsigned long hash_pcs(const uint64_t *pcs, uint32_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
	for (uint32_t i = 0; i < n; i++) {
		h ^= pcs[i];
		h *= 0xff51afd7ed558ccdull;
		h ^= h >> 33;
	}
	return (unsigned long)h;
}

static int match(struct cds_lfht_node *node, const void *key)
{
	const struct stack_node *s = caa_container_of(node, struct stack_node, node);
	const struct stack_key *k = key;
	return s->n == k->n && !memcmp(s->pcs, k->pcs, k->n * sizeof(uint64_t));
}

static uint32_t intern(const uint64_t *pcs, uint32_t n)
{
	if (!n)
		return 0;
	if (!table && !(table = cds_lfht_new(1024, 1024, 1ul << 20, 0, NULL)))
		return 0;
	struct stack_key key = { pcs, n };
	unsigned long h = hash_pcs(pcs, n);
	struct cds_lfht_iter it;
	uint32_t id = 0;
	rcu_read_lock();
	cds_lfht_lookup(table, h, match, &key, &it);
	struct cds_lfht_node *found = cds_lfht_iter_get_node(&it);
	if (found)
		id = caa_container_of(found, struct stack_node, node)->id;
	rcu_read_unlock();
	if (id || nstacks >= MAX_STACKS)
		return id;
	if (nstacks == cap_ids) {
		uint32_t cap = cap_ids ? cap_ids * 2 : 256;
		struct stack_node **p = realloc(by_id, cap * sizeof(*p));
		if (!p)
			return 0;
		by_id = p;
		cap_ids = cap;
	}
	struct stack_node *s = malloc(sizeof(*s) + n * sizeof(uint64_t));
	if (!s)
		return 0;
	cds_lfht_node_init(&s->node);
	s->id = id_base + nstacks + 1;
	s->n = n;
	s->gen = file_gen - 1;
	memcpy(s->pcs, pcs, n * sizeof(uint64_t));
	rcu_read_lock();
	cds_lfht_add_unique(table, h, match, &key, &s->node);
	rcu_read_unlock();
	by_id[nstacks++] = s;
	return s->id;
}

/* Write stack ID if this file has not got it yet. */
static void pack_stack(msgpack_packer *pk, uint32_t id)
{
	if (id <= id_base || id > id_base + nstacks || by_id[id - 1 - id_base]->gen == file_gen)
		return;
	struct stack_node *s = by_id[id - 1 - id_base];
	msgpack_pack_map(pk, 3);
	as_pack_type(pk, AS_T_stack);
	as_pack_key(pk, AS_K_id);
	msgpack_pack_uint32(pk, id);
	as_pack_key(pk, AS_K_frames);
	msgpack_pack_array(pk, s->n);
	for (uint32_t i = 0; i < s->n; i++)
		msgpack_pack_uint64(pk, s->pcs[i]);
	s->gen = file_gen;
}

/* How many ids are taken (for asyncshim recover, preload/shm.c). */
uint32_t as_stacks_count(void)
{
	return id_base + nstacks;
}

/* Recovering a killed process's rings: its trace has ids 1..N already. */
void as_stacks_continue(uint32_t n)
{
	id_base = n;
}

void as_stacks_new_file(msgpack_packer *pk)
{
	file_gen++;
	as_modules_new_file(pk);
}

/* The addresses held by the FRAMES records after slot I. */
static uint32_t frames_at(struct as_thread *t, uint64_t i, uint64_t *pcs)
{
	const struct as_record *r = &t->ring[i & (t->cap - 1)];
	uint32_t k = r->stack, n = 0;
	for (uint32_t j = 1; j <= k; j++) {
		const struct as_record *f = &t->ring[(i + j) & (t->cap - 1)];
		if (f->kind != AS_REC_FRAMES || f->call > 3)
			return 0;       /* not what the shim writes: ignore the stack */
		uint64_t a[3] = { f->ts, f->dur, (uint64_t)f->aux << 32 | f->stack };
		for (unsigned m = 0; m < f->call && n < AS_STACK_MAX; m++)
			pcs[n++] = a[m];
	}
	return n < r->aux ? n : r->aux;
}

uint32_t as_stack_of(msgpack_packer *pk, struct as_thread *t, uint64_t i)
{
	uint64_t pcs[AS_STACK_MAX];
	uint32_t id = intern(pcs, frames_at(t, i, pcs));
	pack_stack(pk, id);
	return id;
}

uint32_t as_stack_intern(msgpack_packer *pk, const uint64_t *pcs, uint32_t n)
{
	uint32_t id = intern(pcs, n);
	pack_stack(pk, id);
	return id;
}

size_t as_stack_ips(uint32_t id, uint64_t *ips, size_t max)
{
	if (id <= id_base || id > id_base + nstacks)
		return 0;
	const struct stack_node *s = by_id[id - 1 - id_base];
	size_t n = s->n < max ? s->n : max;
	memcpy(ips, s->pcs, n * sizeof(uint64_t));
	return n;
}

/* ---- stalls ---- */

void as_stall_reset(struct as_thread *t)
{
	t->c_blocked = 0;
	t->c_sample_iter = 0;
	t->c_sample_ns = 0;
	t->c_sampled = t->c_nsamples = 0;
}

void as_stall_block(struct as_thread *t, uint64_t dur_ns)
{
	t->c_blocked += dur_ns;
}

void as_stall_sample(struct as_thread *t, const struct as_record *r, uint64_t i)
{
	uint64_t pcs[AS_STACK_MAX];
	if (r->dur != t->c_sample_iter) {      /* a sample of a newer iteration */
		t->c_sample_iter = r->dur;
		t->c_sample_ns = 0;
		t->c_sampled = t->c_nsamples = 0;
	}
	t->c_sampled++;
	t->c_sample_ns += r->fd > 0 ? (uint64_t)r->fd : 0;
	uint32_t id = intern(pcs, frames_at(t, i, pcs));
	if (id && t->c_nsamples < AS_STALL_SAMPLES)
		t->c_samples[t->c_nsamples++] = id;
}

static void pack_stall(msgpack_packer *pk, struct as_thread *t, uint64_t start, uint64_t iter_ns)
{
	uint64_t blocked = t->c_blocked < iter_ns ? t->c_blocked : iter_ns;
	int mine = t->c_sample_iter == start;
	uint32_t kept = mine ? t->c_nsamples : 0;
	for (uint32_t j = 0; j < kept; j++)
		pack_stack(pk, t->c_samples[j]);
	msgpack_pack_map(pk, 15);
	as_pack_type(pk, AS_T_stall);
	as_offcpu_pack_cause(pk, t, start, mine ? t->c_sampled : 0);  /* 4 keys */
	as_spans_pack_stall_attr(pk, t, start);    /* "span", "request" */
	as_pack_key(pk, AS_K_tid);
	msgpack_pack_int64(pk, t->tid);
	as_pack_key(pk, AS_K_t);
	msgpack_pack_uint64(pk, as_ticks_to_ns(start));
	as_pack_key(pk, AS_K_dur);
	msgpack_pack_uint64(pk, iter_ns - blocked);
	as_pack_key(pk, AS_K_iteration);
	msgpack_pack_uint64(pk, iter_ns);
	as_pack_key(pk, AS_K_blocked);
	msgpack_pack_uint64(pk, blocked);
	as_pack_key(pk, AS_K_sampled);
	msgpack_pack_uint32(pk, mine ? t->c_sampled : 0);
	as_pack_key(pk, AS_K_sampling_ns);
	msgpack_pack_uint64(pk, mine ? t->c_sample_ns : 0);
	as_pack_key(pk, AS_K_samples);
	msgpack_pack_array(pk, kept);
	for (uint32_t j = 0; j < kept; j++)
		msgpack_pack_uint32(pk, t->c_samples[j]);
}

void as_stall_iter(msgpack_packer *pk, struct as_thread *t, const struct as_record *r)
{
	uint64_t iter_ns = as_dur_to_ns(r->dur), stall_ns = (uint64_t)as_cfg.stall_ms * 1000000u;
	uint64_t blocked = t->c_blocked < iter_ns ? t->c_blocked : iter_ns;
	if (iter_ns - blocked >= stall_ns)
		pack_stall(pk, t, r->ts, iter_ns);
	as_stall_reset(t);
}
