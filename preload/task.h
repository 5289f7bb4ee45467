/* task.h — tasks (coroutines, thread-pool work) and timed loop callbacks.
 *
 * Shared by hooks/ucontext.c, hooks/libuv.c, hooks/libevent.c (which create
 * the records), preload/task.c (ids, the current task, the callback wrapper
 * table) and collector/tasks.c (which writes them to the trace).
 *
 * How the task records use struct as_record (32 bytes, see record.h):
 *
 *   AS_REC_TASK_NEW   ts  = created
 *                     dur = entry function address (work_cb for libuv work)
 *                     aux = task id, low 32 bits;  stack = parent id, low 32 bits
 *                     fd  = bits 0-15: task id bits 32-47, bits 16-31: parent bits 32-47
 *                     call = enum as_task_kind
 *   AS_REC_TASK_RUN   ts  = switched in, dur = how long it ran
 *                     aux/fd = task id (low 32 / high 32 bits)
 *                     call = enum as_run_end: suspended (an await point) or finished
 *   AS_REC_TASK_END   ts  = ended, aux/fd = task id, call = enum as_task_status
 *   AS_REC_CALLBACK   a loop callback that ran >= block_ms:
 *                     ts = start, dur, aux/fd = callback function address
 *                     (low/high 32 bits), call = enum as_cb_source
 *
 * Task ids are a per-process counter starting at 1 (48 bits in records);
 * parent 0 means "created outside any task" (a root).
 */
#ifndef ASYNCSHIM_TASK_H
#define ASYNCSHIM_TASK_H

#include "shim.h"

#include <urcu-bp.h>
#include <urcu/rculfhash.h>
#include <urcu/lfstack.h>

enum as_task_kind { AS_TASK_UCONTEXT = 1, AS_TASK_UV_WORK };
enum as_run_end { AS_RUN_SUSPENDED = 0, AS_RUN_FINISHED = 1 };
enum as_task_status { AS_TASK_COMPLETED = 1, AS_TASK_CANCELLED, AS_TASK_FAILED };
enum as_cb_source {
	AS_CB_NONE = 0,
	AS_CB_UV_TIMER, AS_CB_UV_IDLE, AS_CB_UV_CHECK, AS_CB_UV_PREPARE,
	AS_CB_UV_POLL, AS_CB_UV_READ, AS_CB_UV_LISTEN, AS_CB_UV_ASYNC,
	AS_CB_UV_AFTER_WORK,
	AS_CB_EVENT, AS_CB_EVENT_ONCE,
	AS_CB_COUNT
};

static const char *const as_task_kind_names[] = { NULL, "ucontext", "uv_work" };
static const char *const as_task_status_names[] = { NULL, "completed", "cancelled", "failed" };
static const char *const as_cb_source_names[AS_CB_COUNT] = {
	"none",
	"uv_timer", "uv_idle", "uv_check", "uv_prepare",
	"uv_poll", "uv_read", "uv_listen", "uv_async",
	"uv_after_work",
	"event", "event_once",
};

/* ---- record field packing (used by the shim and the collector) ---- */
static inline void as_rec_set_u64(struct as_record *r, uint64_t v)
{
	r->aux = (uint32_t)v;
	r->fd = (int32_t)(uint32_t)(v >> 32);
}

static inline uint64_t as_rec_u64(const struct as_record *r)
{
	return (uint64_t)r->aux | (uint64_t)(uint32_t)r->fd << 32;
}

static inline void as_rec_set_ids(struct as_record *r, uint64_t id, uint64_t parent)
{
	r->aux = (uint32_t)id;
	r->stack = (uint32_t)parent;
	r->fd = (int32_t)(uint32_t)(((id >> 32) & 0xffff) | ((parent >> 32) & 0xffff) << 16);
}

static inline uint64_t as_rec_id(const struct as_record *r)
{
	return (uint64_t)r->aux | (uint64_t)((uint32_t)r->fd & 0xffff) << 32;
}

static inline uint64_t as_rec_parent(const struct as_record *r)
{
	return (uint64_t)r->stack | (uint64_t)((uint32_t)r->fd >> 16) << 32;
}

/* ---- tasks (preload/task.c) ---- */

/* A task's live state.  It lives wherever the task does: on a coroutine's
 * own stack (ucontext) or in the wrapper of a libuv work request. */
struct as_task {
	uint64_t id;
	uint64_t run_start;     /* ticks, when last switched in */
	void *spans;            /* its open spans (preload/span.c), NULL when none */
};

/* The task running on this thread, NULL outside any task. */
extern __thread struct as_task *as_task_cur __attribute__((tls_model("initial-exec")));

uint64_t as_task_new(int kind, const void *fn);              /* returns the id, 0 if not recording */
void as_task_run(const struct as_task *task, int how);       /* a run ends now */
void as_task_end(uint64_t id, int status);
void as_callback_slow(int source, const void *fn, uint64_t t0, uint64_t t1);

/* Callbacks reported as slow: only the innermost of nested timed callbacks
 * (libevent's internal callbacks call the program's). */
extern __thread unsigned as_cb_reported __attribute__((tls_model("initial-exec")));

/* Time one loop callback: `call` is the call expression. */
#define AS_TIMED_CALLBACK(source, fn, call)                                      \
	do {                                                                     \
		unsigned seen_ = as_cb_reported;                                 \
		uint64_t t0_ = as_now();                                         \
		call;                                                            \
		uint64_t t1_ = as_now();                                         \
		if (AS_UNLIKELY(t1_ - t0_ >= as_block_ticks) && seen_ == as_cb_reported) \
			as_callback_slow(source, (const void *)(fn), t0_, t1_);  \
	} while (0)

/* The thread starts running an event loop (uv_run, event_base_loop). */
void as_loop_enter(void);
/* The library's loop function returns; finished: it ran until no work
 * was left (then the iteration ends here, outside nested loops). */
void as_loop_leave(int finished);

/* Resolve a library function that may live outside the global scope. */
void *as_resolve_lib(const char *name);
int as_lib_is(const void *fn, const char *prefix);

/* ---- callback wrappers (preload/task.c) ----
 * The program's callback (and, for libevent, its argument) for a handle,
 * request or event, keyed by (address, class).  Entries are allocated when a
 * callback is registered (never on the path of every call), found lock-free
 * by the trampolines, and freed by the collector after an RCU grace period. */
enum as_wrap_class { AS_WRAP_UV_HANDLE = 1, AS_WRAP_UV_WORK, AS_WRAP_EVENT };

struct as_wrap {
	struct cds_lfht_node node;
	const void *key;
	int cls;
	int ended;                  /* uv work: the task's end is recorded */
	void *cb[2];                /* the program's callbacks */
	void *arg;                  /* libevent once-callbacks: the program's argument */
	struct as_task task;        /* uv work: the task */
	struct cds_lfs_node free_node;
};

struct as_wrap *as_wrap_find(const void *key, int cls);
struct as_wrap *as_wrap_add(const void *key, int cls);   /* find or create; NULL: do not wrap */
void as_wrap_del(struct as_wrap *w);
void *as_wrap_alloc_unlisted(void);                      /* libevent once-callbacks */
void as_wrap_free_unlisted(void *p);

/* ---- collector side (collector/tasks.c) ---- */
struct msgpack_packer;
/* Write this thread's task, callback and function records in [from, to). */
void as_tasks_drain(struct msgpack_packer *pk, struct as_thread *t, uint64_t from, uint64_t to);
void as_wraps_reclaim(void);   /* frees deleted wrappers after a grace period */

#endif
