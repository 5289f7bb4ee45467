/* buffer.c — per-thread record rings and the registry the collector walks.
 *
 * A thread gets its ring the first time it does something worth recording
 * (today: its first loop wait).  That one-time registration maps the ring
 * (a file in /dev/shm, so a SIGKILL leaves it behind: preload/shm.c; else
 * anonymous memory) and takes the registry mutex; every later record is a
 * plain store into the thread's own ring.  The registry is an RCU list (urcu-bp) so the
 * collector walks it without ever blocking a producer. */
#include "runtime.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <urcu-bp.h>
#include <urcu/rculist.h>
#include <urcu/uatomic.h>

__thread struct as_tls as_tls __attribute__((tls_model("initial-exec")));

/* Aligned as a struct as_thread is: the list walks (cds_list_for_each_entry
 * and friends) end on the head taken as an as_thread, whose node member
 * they read; a head less aligned than the struct is undefined (UBSan). */
struct cds_list_head as_threads AS_THREADS_ALIGN = CDS_LIST_HEAD_INIT(as_threads);
uint64_t as_ringless_threads, as_ringless_events;
static struct as_lock registry_mutex = AS_LOCK_INIT;
static pthread_key_t exit_key;
static int exit_key_ok;

pid_t as_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

void as_registry_lock(void)
{
	as_lock(&registry_mutex);
}

void as_registry_unlock(void)
{
	as_unlock(&registry_mutex);
}

/* Runs when a registered thread exits: keep its name, then hand the ring
 * to the collector, which drains what is left and frees it. */
static void thread_exit(void *arg)
{
	struct as_thread *t = arg;
	as_tls.internal = 1;        /* later destructors' I/O is not ours to record */
	as_tls.loop = 0;
	as_tls.t = NULL;
	as_own_stack_unmap();
	as_sys_prctl(PR_GET_NAME, (unsigned long)t->name, 0, 0, 0);
	cmm_smp_wmb();
	CMM_STORE_SHARED(t->dead, 1);
}

void as_buffer_init(void)
{
	exit_key_ok = pthread_key_create(&exit_key, thread_exit) == 0;
}

static uint64_t ring_capacity(void)
{
	uint64_t want = (uint64_t)as_cfg.buffer_kb * 1024 / sizeof(struct as_record);
	uint64_t cap = 64;
	while (cap * 2 <= want)
		cap *= 2;
	return cap;
}

struct as_thread *as_thread_register(void)
{
	if (as_tls.busy || as_tls.internal || !CMM_LOAD_SHARED(as_active))
		return NULL;
	as_tls.busy = 1;
	int saved = errno;
	uint64_t cap = ring_capacity();
	size_t size = sizeof(struct as_thread) + cap * sizeof(struct as_record);
	size = (size + 4095) & ~(size_t)4095;
	pid_t tid = as_gettid();
	struct as_thread *t = as_shm_ring(size, tid);
	if (!t)
		t = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (t == MAP_FAILED) {
		/* no memory: this thread goes unrecorded, but counted (its
		 * first wait is this one; hooks/wait.c counts the others) */
		as_tls.internal = 1;
		as_tls.ringless = 1;
		uatomic_inc(&as_ringless_threads);
		uatomic_inc(&as_ringless_events);
		as_tls.busy = 0;
		errno = saved;
		return NULL;
	}
	t->map_size = size;
	t->cap = cap;
	t->tid = tid;
	t->pthread = pthread_self();
	t->tls = &as_tls;
	as_sys_prctl(PR_GET_NAME, (unsigned long)t->name, 0, 0, 0);  /* for asyncshim recover; updated when drained */
	as_registry_lock();
	cds_list_add_tail_rcu(&t->node, &as_threads);
	as_registry_unlock();
	if (exit_key_ok)
		pthread_setspecific(exit_key, t);
	as_own_stack_map();
	as_tls.t = t;
	as_tls.busy = 0;
	errno = saved;
	return t;
}

void as_thread_free(struct as_thread *t)
{
	munmap(t, t->map_size);
}

/* Every ring at fork time, taken by the parent with the registry locked.
 * The child must not walk the registry: its nodes live in the rings, and
 * shared rings keep changing under the child as the parent goes on. */
static struct as_thread **fork_rings;
static size_t fork_nrings, fork_cap;

void as_rings_before_fork(void)
{
	struct as_thread *t;
	size_t n = 0;
	cds_list_for_each_entry(t, &as_threads, node)
		n++;
	if (n > fork_cap) {
		struct as_thread **p = realloc(fork_rings, n * sizeof(*p));
		if (p) {
			fork_rings = p;
			fork_cap = n;
		}
	}
	fork_nrings = 0;
	cds_list_for_each_entry(t, &as_threads, node) {
		if (fork_nrings == fork_cap)
			break;          /* no memory: those stay mapped in the child */
		fork_rings[fork_nrings++] = t;
	}
}

/* The child: forget the parent's registry (without writing into it) and
 * unmap its rings, all but KEEP. */
void as_rings_after_fork_child(struct as_thread *keep)
{
	CDS_INIT_LIST_HEAD(&as_threads);
	for (size_t i = 0; i < fork_nrings; i++)
		if (fork_rings[i] != keep)
			munmap(fork_rings[i], fork_rings[i]->map_size);
	fork_nrings = 0;
}

/* A fork child's own ring, OLD, is the parent's shared file (or a private
 * copy of anonymous memory): move it to a ring of the child's own, header
 * and all, put that on the (child's) registry and unmap the old one.
 * OLD is not on the registry; a shared OLD is never written.
 * Single-threaded (atfork child). */
struct as_thread *as_thread_fork_child(struct as_thread *old)
{
	struct as_thread *t = as_shm_ring(old->map_size, old->tid);
	if (!t) {
		if (!old->shm_tid) {    /* already the child's own memory */
			cds_list_add_tail(&old->node, &as_threads);
			return old;
		}
		t = mmap(NULL, old->map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (t == MAP_FAILED) {  /* never write the parent's file: stop here */
			munmap(old, old->map_size);
			as_tls.t = NULL;
			as_tls.loop = 0;
			as_tls.internal = 1;
			if (exit_key_ok)
				pthread_setspecific(exit_key, NULL);
			return NULL;
		}
	}
	pid_t shm_tid = t->shm_tid;
	uint64_t magic = t->shm_magic, start = t->shm_start_time;   /* the child's */
	memcpy(t, old, sizeof(*t));
	t->shm_tid = shm_tid;
	t->shm_magic = magic;
	t->shm_start_time = start;
	cds_list_add_tail(&t->node, &as_threads);
	as_tls.t = t;
	if (exit_key_ok)
		pthread_setspecific(exit_key, t);
	munmap(old, old->map_size);
	return t;
}
