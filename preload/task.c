/* task.c — task ids, the current task, task and slow-callback records, loop
 * marking from coroutine-library entry points, and the table of wrapped
 * callbacks.
 *
 * Task records are written into the ring of the thread that did the thing
 * (created, ran, ended the task); a task may touch several threads (libuv
 * work: queued on the loop, run on the pool), the tools join them by id. */
#include "runtime.h"
#include "task.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <urcu-bp.h>
#include <urcu/uatomic.h>

__thread struct as_task *as_task_cur __attribute__((tls_model("initial-exec")));
__thread unsigned as_cb_reported __attribute__((tls_model("initial-exec")));

static uint64_t last_task_id;

/* The thread to record on, or NULL when not recording here. */
static struct as_thread *rec_thread(void)
{
	if (AS_UNLIKELY(!CMM_LOAD_SHARED(as_active) || as_tls.busy || as_tls.internal))
		return NULL;
	return as_thread_self();
}

uint64_t as_task_new(int kind, const void *fn)
{
	struct as_thread *t = rec_thread();
	if (!t)
		return 0;
	uint64_t id = uatomic_add_return(&last_task_id, 1);
	struct as_record *r = as_reserve(t);
	if (r) {
		r->kind = AS_REC_TASK_NEW;
		r->call = (uint8_t)kind;
		r->fd_kind = 0;
		r->pad = 0;
		r->ts = as_now();
		r->dur = (uint64_t)(uintptr_t)fn;
		as_rec_set_ids(r, id, as_task_cur ? as_task_cur->id : 0);
		as_commit(t);
	}
	return id;
}

void as_task_run(const struct as_task *task, int how)
{
	uint64_t now = as_now();
	struct as_thread *t = rec_thread();
	if (!t || !task->id || !task->run_start)
		return;
	struct as_record *r = as_reserve(t);
	if (r) {
		r->kind = AS_REC_TASK_RUN;
		r->call = (uint8_t)how;
		r->fd_kind = 0;
		r->pad = 0;
		r->ts = task->run_start;
		r->dur = now - task->run_start;
		r->stack = 0;
		as_rec_set_u64(r, task->id);
		as_commit(t);
	}
}

void as_task_end(uint64_t id, int status)
{
	struct as_thread *t = rec_thread();
	if (!t || !id)
		return;
	struct as_record *r = as_reserve(t);
	if (r) {
		r->kind = AS_REC_TASK_END;
		r->call = (uint8_t)status;
		r->fd_kind = 0;
		r->pad = 0;
		r->ts = as_now();
		r->dur = 0;
		r->stack = 0;
		as_rec_set_u64(r, id);
		as_commit(t);
	}
}

void as_callback_slow(int source, const void *fn, uint64_t t0, uint64_t t1)
{
	as_cb_reported++;
	struct as_thread *t = rec_thread();
	if (!t)
		return;
	struct as_record *r = as_reserve(t);
	if (r) {
		r->kind = AS_REC_CALLBACK;
		r->call = (uint8_t)source;
		r->fd_kind = 0;
		r->pad = 0;
		r->ts = t0;
		r->dur = t1 - t0;
		r->stack = 0;
		as_rec_set_u64(r, (uint64_t)(uintptr_t)fn);
		as_commit(t);
	}
}

/* ---- loops entered through a library ----
 * uv_run and event_base_loop make the thread a loop thread at once, so that
 * callbacks run before the first wait (due timers) are inside an iteration
 * and their blocking calls are seen. */
static __thread unsigned loop_depth __attribute__((tls_model("initial-exec")));

void as_loop_enter(void)
{
	loop_depth++;
	struct as_thread *t = rec_thread();
	if (!t)
		return;
	if (!as_tls.loop) {
		as_tls.loop = 1;
		as_tls.raw = as_raw_thread_ok();
		CMM_STORE_SHARED(t->is_loop, 1);
	}
	if (!t->iter_start)
		t->iter_start = as_now();
}

/* A loop that ran until it had no work left ends its iteration on return:
 * what the thread does next (tear-down, a later loop) is no iteration. */
void as_loop_leave(int finished)
{
	if (loop_depth)
		loop_depth--;
	struct as_thread *t = as_tls.t;
	if (!finished || loop_depth || !t || !t->iter_start || !CMM_LOAD_SHARED(as_active) ||
	    as_tls.busy || as_tls.internal)
		return;
	uint64_t now = as_now();
	struct as_record *r = as_reserve(t);
	if (r) {
		r->kind = AS_REC_ITER;
		r->ts = t->iter_start;
		r->dur = now - t->iter_start;
		as_commit(t);
	}
	t->iter_start = 0;
}

/* ---- resolving library functions ----
 * RTLD_NEXT finds libuv/libevent when the program links them.  A library
 * dlopen()ed with RTLD_LOCAL (a plugin linked against libuv) is outside
 * that scope although its calls reach our hooks: look in every loaded
 * object then.  Rare and once per function. */
struct lib_list {
	char *paths[256];
	int n;
};

static int collect_lib(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	struct lib_list *l = data;
	if (info->dlpi_name && info->dlpi_name[0] && l->n < 256)
		l->paths[l->n++] = strdup(info->dlpi_name);
	return 0;
}

void *as_resolve_lib(const char *name)
{
	void *p = as_resolve(name);
	if (p)
		return p;
	Dl_info self;
	if (!dladdr((void *)as_resolve_lib, &self))
		return NULL;
	struct lib_list *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	int saved = errno;
	dl_iterate_phdr(collect_lib, l);
	for (int i = 0; i < l->n; i++) {
		void *h = l->paths[i] ? dlopen(l->paths[i], RTLD_LAZY | RTLD_NOLOAD) : NULL;
		Dl_info in;
		if (h) {
			void *q = dlsym(h, name);
			if (q && !p && dladdr(q, &in) && in.dli_fbase != self.dli_fbase)
				p = q;
			as_sys_dlclose(h);
		}
		free(l->paths[i]);
	}
	free(l);
	errno = saved;
	if (!p)
		as_warn("asyncshim: cannot find the real %s", name);
	return p;
}

/* Is fn in a library whose file name starts with prefix ("libuv")?  A
 * function of the same name in some other library has other semantics:
 * its callbacks must not be wrapped. */
int as_lib_is(const void *fn, const char *prefix)
{
	Dl_info in;
	int saved = errno;
	int ok = fn && dladdr(fn, &in) && in.dli_fname;
	if (ok) {
		const char *base = strrchr(in.dli_fname, '/');
		base = base ? base + 1 : in.dli_fname;
		ok = !strncmp(base, prefix, strlen(prefix));
	}
	errno = saved;
	return ok;
}

/* ---- wrapped callbacks ---- */

/* Fixed size (~1 MiB, made at the first wrapped callback): chains stay
 * short up to the cap.  Beyond WRAP_MAX live wrappers (~100 MB) callbacks
 * are left unwrapped: not timed, still called. */
#define WRAP_BUCKETS (1u << 16)
#define WRAP_MAX (1L << 20)

static struct cds_lfht *wraps;
static pthread_once_t wraps_once = PTHREAD_ONCE_INIT;
static long wrap_count;
static struct cds_lfs_stack wrap_free;

struct wrap_key {
	const void *key;
	int cls;
};

static void wraps_init(void)
{
	cds_lfs_init(&wrap_free);
	/* fixed size, no CDS_LFHT_AUTO_RESIZE: resizing would start a worker thread */
	wraps = cds_lfht_new(WRAP_BUCKETS, WRAP_BUCKETS, WRAP_BUCKETS, 0, NULL);
}

static unsigned long wrap_hash(const void *key, int cls)
{
	uint64_t x = ((uint64_t)(uintptr_t)key ^ (uint64_t)cls) * 0x9e3779b97f4a7c15ull;
	return (unsigned long)(x ^ (x >> 31));
}

static int wrap_match(struct cds_lfht_node *node, const void *k)
{
	const struct as_wrap *w = caa_container_of(node, struct as_wrap, node);
	const struct wrap_key *wk = k;
	return w->key == wk->key && w->cls == wk->cls;
}

struct as_wrap *as_wrap_find(const void *key, int cls)
{
	if (!CMM_LOAD_SHARED(wraps))
		return NULL;
	struct wrap_key k = { key, cls };
	struct cds_lfht_iter it;
	rcu_read_lock();
	cds_lfht_lookup(wraps, wrap_hash(key, cls), wrap_match, &k, &it);
	struct cds_lfht_node *node = cds_lfht_iter_get_node(&it);
	rcu_read_unlock();
	return node ? caa_container_of(node, struct as_wrap, node) : NULL;
}

struct as_wrap *as_wrap_add(const void *key, int cls)
{
	if (!CMM_LOAD_SHARED(as_active) || as_tls.internal)
		return NULL;
	int saved = errno;
	pthread_once(&wraps_once, wraps_init);
	struct as_wrap *w = NULL;
	if (!wraps)
		goto out;
	w = as_wrap_find(key, cls);
	if (w || uatomic_read(&wrap_count) >= WRAP_MAX)
		goto out;
	w = calloc(1, sizeof(*w));
	if (!w)
		goto out;
	w->key = key;
	w->cls = cls;
	cds_lfht_node_init(&w->node);
	struct wrap_key k = { key, cls };
	rcu_read_lock();
	struct cds_lfht_node *node = cds_lfht_add_unique(wraps, wrap_hash(key, cls), wrap_match, &k, &w->node);
	rcu_read_unlock();
	if (node != &w->node) {         /* another thread added it first */
		free(w);
		w = caa_container_of(node, struct as_wrap, node);
	} else {
		uatomic_inc(&wrap_count);
	}
out:
	errno = saved;
	return w;
}

/* Unlink now; free after a grace period (the collector does it), since a
 * trampoline on another thread may still be reading the entry. */
void as_wrap_del(struct as_wrap *w)
{
	int ok;
	rcu_read_lock();
	ok = cds_lfht_del(wraps, &w->node) == 0;
	rcu_read_unlock();
	if (ok) {
		uatomic_dec(&wrap_count);
		cds_lfs_node_init(&w->free_node);
		cds_lfs_push(&wrap_free, &w->free_node);
	}
}

void *as_wrap_alloc_unlisted(void)
{
	if (!CMM_LOAD_SHARED(as_active) || as_tls.internal)
		return NULL;
	int saved = errno;
	void *p = calloc(1, sizeof(struct as_wrap));
	errno = saved;
	return p;
}

void as_wrap_free_unlisted(void *p)
{
	int saved = errno;
	free(p);
	errno = saved;
}

/* Called by the collector only (the one popper of the stack). */
void as_wraps_reclaim(void)
{
	if (!CMM_LOAD_SHARED(wraps))
		return;
	struct cds_lfs_head *head = __cds_lfs_pop_all(&wrap_free);
	if (!head)
		return;
	synchronize_rcu();
	struct cds_lfs_node *n, *next;
	cds_lfs_for_each_safe(head, n, next)
		free(caa_container_of(n, struct as_wrap, free_node));
}
