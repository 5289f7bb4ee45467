/* offcpu.c — the collector's side of the watchdog's findings (see
 * preload/offcpu.h): waits in syscalls no hook timed become blocking calls
 * with "seen_by": "watchdog", and the scheduler's figures of an iteration
 * give its stall a cause.
 *
 * Both belong to an iteration and must be known when its ITER record is
 * judged (a wait is time the stall does not have).  The watchdog queues
 * them at its first look after the iteration ended, so the collector holds
 * back that ITER record (and what follows it in the ring) until then: at
 * most one watchdog look, a few ms.  A watchdog that stopped looking
 * (recording switched off) is not waited for more than HOLD_NS. */
#include "stacks.h"
#include "../preload/span.h"
#include "../format/pack.h"

#include <string.h>

#define HOLD_NS 2000000000ull

/* Where this drain must stop: before the ITER record of an iteration the
 * watchdog has not finished with. */
uint64_t as_offcpu_limit(struct as_thread *t, uint64_t tail, uint64_t head, int final)
{
	struct as_offcpu *o = &t->off;
	uint64_t open = CMM_LOAD_SHARED(o->open);
	if (!open || final)
		return head;
	for (uint64_t i = tail; i < head; i++) {
		const struct as_record *r = &t->ring[i & (t->cap - 1)];
		if (r->kind != AS_REC_ITER || r->ts != open)
			continue;
		uint64_t now = as_mono_ns();
		if (o->c_hold_iter != open) {
			o->c_hold_iter = open;
			o->c_hold_since = now;
		}
		return now - o->c_hold_since < HOLD_NS ? i : head;
	}
	return head;
}

/* Written like a hook's blocking call, and judged like one by the in-process
 * gate and flight mode's triggers. */
static void pack_wait(msgpack_packer *pk, struct as_thread *t, const struct as_off_event *e, uint64_t dur_ns)
{
	char buf[32];
	uint32_t stack = as_stack_intern(pk, e->pcs, e->npcs);
	as_gate_note_wait(t->tid, as_syscall_name(e->nr, buf, sizeof(buf)), e->fd, (int)e->fd_kind, stack, dur_ns);
	msgpack_pack_map(pk, 11);
	as_pack_type(pk, AS_T_block);
	as_pack_key(pk, AS_K_tid);
	msgpack_pack_int64(pk, t->tid);
	as_pack_key(pk, AS_K_call);
	as_pack_str(pk, as_syscall_name(e->nr, buf, sizeof(buf)));
	as_pack_key(pk, AS_K_fd);
	if (e->fd >= 0)
		msgpack_pack_int32(pk, e->fd);
	else
		msgpack_pack_nil(pk);
	as_pack_key(pk, AS_K_fd_kind);
	if (e->fd_kind && e->fd_kind <= AS_FD_OTHER)
		as_pack_str(pk, as_fd_kind_names[e->fd_kind]);
	else
		msgpack_pack_nil(pk);
	as_pack_key(pk, AS_K_t);
	msgpack_pack_uint64(pk, as_ticks_to_ns(e->ts));
	as_pack_key(pk, AS_K_dur);
	msgpack_pack_uint64(pk, dur_ns);
	as_pack_key(pk, AS_K_stack);
	msgpack_pack_uint32(pk, stack);
	as_spans_pack_stall_attr(pk, t, e->iter);  /* "span", "request": of its iteration */
	as_pack_key(pk, AS_K_seen_by);
	as_pack_str(pk, "watchdog");
	as_flight_note_block(as_ticks_to_ns(e->ts), dur_ns);
}

/* The findings queued for iterations up to ITER (an ITER record, or NULL
 * for "every one before ticks UPTO"): waits are written, the scheduler's
 * figures of ITER are kept for its stall. */
void as_offcpu_take(msgpack_packer *pk, struct as_thread *t, const struct as_record *iter, uint64_t upto)
{
	struct as_offcpu *o = &t->off;
	uint64_t head = CMM_LOAD_SHARED(o->head), block_ns = (uint64_t)as_cfg.block_ms * 1000000u;
	cmm_smp_rmb();
	if (iter)
		upto = iter->ts;
	while (o->tail != head) {
		const struct as_off_event *e = &o->q[o->tail % AS_OFF_QUEUE];
		if (e->iter > upto)
			break;          /* a later iteration's */
		int mine = iter && e->iter == iter->ts;
		if (e->kind == AS_OFF_WAIT) {
			uint64_t dur = e->dur;
			if (mine && e->ts >= iter->ts && e->ts + dur > iter->ts + iter->dur)
				dur = e->ts < iter->ts + iter->dur ? iter->ts + iter->dur - e->ts : 0;
			uint64_t dur_ns = as_dur_to_ns(dur);
			if (dur_ns >= block_ns) {
				pack_wait(pk, t, e, dur_ns);
				if (mine)
					as_stall_block(t, dur_ns);
			}
		} else if (e->kind == AS_OFF_SCHED && mine) {
			o->c_sched_iter = e->iter;
			o->c_run_ns = e->run_ns;
			o->c_runq_ns = e->runq_ns;
			o->c_window_ns = e->window_ns;
			o->c_runnable = e->runnable;
			o->c_asleep = e->asleep;
		}
		cmm_smp_mb();
		CMM_STORE_SHARED(o->tail, o->tail + 1);
	}
}

/* A stall's "cause", "cpu_ns", "runq_ns", "window_ns" (4 keys): from the
 * scheduler's figures when the watchdog watched it, else from its samples. */
void as_offcpu_pack_cause(msgpack_packer *pk, struct as_thread *t, uint64_t start, uint32_t sampled)
{
	const struct as_offcpu *o = &t->off;
	const char *cause = sampled ? "cpu" : "unknown";
	int known = o->c_sched_iter == start && o->c_window_ns;
	if (known) {
		/* The kernel adds a runqueue wait to runq_ns only once the thread
		 * runs again, so a thread waiting for a CPU at the last reading
		 * looks off CPU by the figures alone: the looks' states decide
		 * between runnable and asleep, the figures between running and
		 * waiting for a CPU.  Preempted means it waited for a CPU at
		 * least twice as long as it ran: on a merely busy machine a
		 * loop that burns CPU still gets a share and stays "cpu", with
		 * its samples. */
		uint64_t run = o->c_run_ns, runq = o->c_runq_ns, w = o->c_window_ns;
		uint64_t off = w > run + runq ? w - run - runq : 0;
		int asleep = o->c_runnable + o->c_asleep ? o->c_asleep > o->c_runnable : off > run + runq;
		cause = asleep ? "off_cpu" : runq > 2 * run ? "preempted" : "cpu";
	}
	as_pack_key(pk, AS_K_cause);
	as_pack_str(pk, cause);
	const enum as_trace_key keys[3] = { AS_K_cpu_ns, AS_K_runq_ns, AS_K_window_ns };
	uint64_t vals[3] = { o->c_run_ns, o->c_runq_ns, o->c_window_ns };
	for (int k = 0; k < 3; k++) {
		as_pack_key(pk, keys[k]);
		if (known)
			msgpack_pack_uint64(pk, vals[k]);
		else
			msgpack_pack_nil(pk);
	}
}
