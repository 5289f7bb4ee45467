/* tasks.c — writes task, task-run, slow-callback and function records.
 *
 * Runs on the collector thread, called from drain_thread() for every ring.
 * Task runs are batched per drain like iterations; functions (task entry
 * points, callbacks) are interned: the first time an address appears in
 * this trace file a `func` record names it (dladdr: module, offset, and the
 * dynamic symbol when the address is exactly one), later records carry only
 * the address.  Encodings: docs/trace-format.md. */
#include "../preload/runtime.h"
#include "../preload/task.h"
#include "../format/pack.h"

#include <dlfcn.h>
#include <limits.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- packing helpers (the collector's are static to collector.c) ---- */

static void put_kv_str(msgpack_packer *pk, enum as_trace_key k, const char *v)
{
	as_pack_key(pk, k);
	as_pack_str(pk, v);
}

static void put_kv_u64(msgpack_packer *pk, enum as_trace_key k, uint64_t v)
{
	as_pack_key(pk, k);
	msgpack_pack_uint64(pk, v);
}

/* ---- interned functions ---- */

struct func_seen {
	struct cds_lfht_node node;
	uintptr_t addr;
	pid_t pid;      /* the process whose trace file has the func record */
};

static struct cds_lfht *funcs;

static int func_match(struct cds_lfht_node *node, const void *key)
{
	return caa_container_of(node, struct func_seen, node)->addr == *(const uintptr_t *)key;
}

static unsigned long func_hash(uintptr_t a)
{
	uint64_t x = (uint64_t)a * 0x9e3779b97f4a7c15ull;
	return (unsigned long)(x ^ (x >> 31));
}

static void pack_func(msgpack_packer *pk, uintptr_t addr)
{
	Dl_info in;
	const char *name = NULL, *module = NULL;
	uint64_t offset = addr;
	static char exe[PATH_MAX];
	memset(&in, 0, sizeof(in));
	/* a recovery runs in another process: its addresses mean nothing here */
	if (addr && !as_recovering && dladdr((void *)addr, &in)) {
		module = in.dli_fname;
		offset = addr - (uintptr_t)in.dli_fbase;
		if (in.dli_sname && (uintptr_t)in.dli_saddr == addr)
			name = in.dli_sname;
	}
	if (module && !module[0]) {     /* the main program */
		if (!exe[0]) {
			ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
			exe[n > 0 ? n : 0] = '\0';
		}
		module = exe;
	}
	msgpack_pack_map(pk, 5);
	as_pack_type(pk, AS_T_func);
	put_kv_u64(pk, AS_K_addr, addr);
	put_kv_str(pk, AS_K_name, name);
	put_kv_str(pk, AS_K_module, module);
	put_kv_u64(pk, AS_K_offset, offset);
}

/* Write a func record unless this trace file already has one for addr. */
static void intern_func(msgpack_packer *pk, uintptr_t addr)
{
	pid_t pid = CMM_LOAD_SHARED(as_pid);     /* a fork child has its own file */
	if (!funcs)
		funcs = cds_lfht_new(1024, 1024, 1024, 0, NULL);
	if (!funcs) {
		pack_func(pk, addr);
		return;
	}
	struct cds_lfht_iter it;
	rcu_read_lock();
	cds_lfht_lookup(funcs, func_hash(addr), func_match, &addr, &it);
	struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
	struct func_seen *f = node ? caa_container_of(node, struct func_seen, node) : NULL;
	if (f && f->pid == pid) {
		rcu_read_unlock();
		return;
	}
	if (f) {
		f->pid = pid;           /* a fork child's new trace file */
	} else if ((f = calloc(1, sizeof(*f)))) {
		f->addr = addr;
		f->pid = pid;
		cds_lfht_node_init(&f->node);
		cds_lfht_add(funcs, func_hash(addr), &f->node);
	}
	rcu_read_unlock();
	pack_func(pk, addr);
}

/* ---- records ---- */

static void pack_task(msgpack_packer *pk, struct as_thread *t, const struct as_record *r)
{
	uint64_t parent = as_rec_parent(r);
	intern_func(pk, (uintptr_t)r->dur);
	msgpack_pack_map(pk, 7);
	as_pack_type(pk, AS_T_task);
	as_pack_key(pk, AS_K_tid);
	msgpack_pack_int64(pk, t->tid);
	put_kv_u64(pk, AS_K_id, as_rec_id(r));
	as_pack_key(pk, AS_K_parent);
	if (parent)
		msgpack_pack_uint64(pk, parent);
	else
		msgpack_pack_nil(pk);
	put_kv_str(pk, AS_K_kind, r->call == AS_TASK_UCONTEXT ? "ucontext" : r->call == AS_TASK_UV_WORK ? "uv_work" : "other");
	put_kv_u64(pk, AS_K_fn, r->dur);
	put_kv_u64(pk, AS_K_t, as_ticks_to_ns(r->ts));
}

static void pack_task_end(msgpack_packer *pk, struct as_thread *t, const struct as_record *r)
{
	msgpack_pack_map(pk, 5);
	as_pack_type(pk, AS_T_task_end);
	as_pack_key(pk, AS_K_tid);
	msgpack_pack_int64(pk, t->tid);
	put_kv_u64(pk, AS_K_id, as_rec_u64(r));
	put_kv_u64(pk, AS_K_t, as_ticks_to_ns(r->ts));
	put_kv_str(pk, AS_K_status, r->call >= AS_TASK_COMPLETED && r->call <= AS_TASK_FAILED
					 ? as_task_status_names[r->call] : "failed");
}

static void pack_callback(msgpack_packer *pk, struct as_thread *t, const struct as_record *r)
{
	uint64_t fn = as_rec_u64(r);
	intern_func(pk, (uintptr_t)fn);
	msgpack_pack_map(pk, 6);
	as_pack_type(pk, AS_T_callback);
	as_pack_key(pk, AS_K_tid);
	msgpack_pack_int64(pk, t->tid);
	put_kv_u64(pk, AS_K_fn, fn);
	put_kv_str(pk, AS_K_source, r->call < AS_CB_COUNT ? as_cb_source_names[r->call] : "none");
	put_kv_u64(pk, AS_K_t, as_ticks_to_ns(r->ts));
	put_kv_u64(pk, AS_K_dur, as_dur_to_ns(r->dur));
}

/* Runs of one drain, one batch: d = [id, gap, dur, end] per run, where the
 * run starts `gap` ns after the previous one in the batch (the first at t0)
 * and end is 0 (suspended: an await point) or 1 (finished). */
static void pack_runs(msgpack_packer *pk, struct as_thread *t, uint64_t from, uint64_t to, uint64_t n)
{
	uint64_t t0 = 0, prev = 0;
	int first = 1;
	msgpack_pack_map(pk, 4);
	as_pack_type(pk, AS_T_task_runs);
	as_pack_key(pk, AS_K_tid);
	msgpack_pack_int64(pk, t->tid);
	as_pack_key(pk, AS_K_d);
	msgpack_pack_array(pk, (size_t)n * 4);
	for (uint64_t i = from; i < to; i++) {
		const struct as_record *r = &t->ring[i & (t->cap - 1)];
		if (r->kind != AS_REC_TASK_RUN)
			continue;
		uint64_t start = as_ticks_to_ns(r->ts);
		if (first) {
			t0 = prev = start;
			first = 0;
		}
		msgpack_pack_uint64(pk, as_rec_u64(r));
		msgpack_pack_uint64(pk, start >= prev ? start - prev : 0);
		msgpack_pack_uint64(pk, as_dur_to_ns(r->dur));
		msgpack_pack_uint64(pk, r->call == AS_RUN_FINISHED ? 1 : 0);
		prev = start >= prev ? start : prev;
	}
	put_kv_u64(pk, AS_K_t0, t0);
}

void as_tasks_drain(struct msgpack_packer *pk, struct as_thread *t, uint64_t from, uint64_t to)
{
	uint64_t runs = 0, block_ns = (uint64_t)as_cfg.block_ms * 1000000u;
	for (uint64_t i = from; i < to; i++) {
		const struct as_record *r = &t->ring[i & (t->cap - 1)];
		switch (r->kind) {
		case AS_REC_TASK_NEW:
			pack_task(pk, t, r);
			break;
		case AS_REC_TASK_RUN:
			runs++;
			break;
		case AS_REC_TASK_END:
			pack_task_end(pk, t, r);
			break;
		case AS_REC_CALLBACK:
			if (as_dur_to_ns(r->dur) >= block_ns)
				pack_callback(pk, t, r);
			break;
		default:
			break;
		}
	}
	if (runs)
		pack_runs(pk, t, from, to, runs);
}
