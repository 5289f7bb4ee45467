/* ucontext.c — makecontext, swapcontext, setcontext: coroutines as tasks.
 *
 * makecontext creates a task.  Its entry function is wrapped by a
 * trampoline so that returning from it is seen (the task completes); the
 * trampoline's state (task id, entry function, arguments) is kept at the top
 * of the coroutine's own stack, so nothing is allocated and nothing leaks
 * when the program drops a coroutine.  uc_link semantics are unchanged: the
 * trampoline returns normally to glibc's start code, which follows uc_link.
 *
 * swapcontext/setcontext switch tasks.  The current task is a thread-local
 * pointer; the task switched out records the run that just ended (an await
 * point) and clears it; whatever runs next sets it: the trampoline of a new
 * task, or the swapcontext call that the resumed task is returning from
 * (its `me` local survived the switch on its own stack).  A context saved
 * with getcontext and resumed with setcontext/swapcontext runs as no task
 * until it switches again (getcontext returns twice and cannot be wrapped). */
#include "task.h"

#include <stdarg.h>
#include <string.h>
#include <ucontext.h>

#define UC_ARGS 16          /* arguments of an entry function we wrap */
#define UC_FORWARD 32       /* arguments passed through when not wrapping */
#define UC_MIN_STACK 4096   /* smaller stacks are not wrapped */

struct uc_start {
	struct as_task task;
	void (*fn)(void);
	long args[UC_ARGS];
};

typedef void (*uc_fn)(long, long, long, long, long, long, long, long,
		      long, long, long, long, long, long, long, long);

AS_REAL(void, makecontext, (ucontext_t *, void (*)(void), int, ...));
AS_REAL(int, swapcontext, (ucontext_t *, const ucontext_t *));
AS_REAL(int, setcontext, (const ucontext_t *));

/* Thread-local accesses after a switch go through these non-inlined
 * functions: the task may resume on another thread, and the compiler must
 * not reuse a TLS address computed before the switch. */
static __attribute__((noinline)) void resumed(struct as_task *me)
{
	as_task_cur = me;
	if (me)
		me->run_start = as_now();
}

static __attribute__((noinline)) void suspend(void)
{
	struct as_task *me = as_task_cur;
	if (me)
		as_task_run(me, AS_RUN_SUSPENDED);
	as_task_cur = NULL;
}

static __attribute__((noinline)) void completed(struct as_task *task)
{
	as_task_run(task, AS_RUN_FINISHED);
	as_task_end(task->id, AS_TASK_COMPLETED);
	as_task_cur = NULL;
}

/* Entry of every wrapped coroutine; runs on the coroutine's stack, below
 * its uc_start block.  Extra arguments are harmless in the x86-64 ABI. */
static void uc_entry(struct uc_start *st)
{
	resumed(&st->task);
	const long *a = st->args;
	((uc_fn)st->fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7],
			a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]);
	completed(&st->task);
}

static int wrap(ucontext_t *ucp, void (*fn)(void), int argc, const long *args)
{
	if (!CMM_LOAD_SHARED(as_active) || as_tls.busy || as_tls.internal || argc < 0 || argc > UC_ARGS)
		return 0;
	char *lo = ucp->uc_stack.ss_sp;
	size_t size = ucp->uc_stack.ss_size;
	if (!lo || size < 2 * UC_MIN_STACK)
		return 0;
	uintptr_t top = (uintptr_t)lo + size;
	struct uc_start *st = (struct uc_start *)((top - sizeof(struct uc_start)) & ~(uintptr_t)63);
	uint64_t id = as_task_new(AS_TASK_UCONTEXT, (const void *)fn);
	if (!id)
		return 0;
	st->task.id = id;
	st->task.run_start = 0;
	st->task.spans = NULL;
	st->fn = fn;
	memset(st->args, 0, sizeof(st->args));
	memcpy(st->args, args, (size_t)argc * sizeof(long));
	/* glibc builds the first frame below ss_sp + ss_size: below our block */
	ucp->uc_stack.ss_size = (size_t)((char *)st - lo);
	real_makecontext(ucp, (void (*)(void))uc_entry, 1, st);
	ucp->uc_stack.ss_size = size;
	return 1;
}

/* glibc reads each argument as a 64-bit value on x86-64 (makecontext.c). */
AS_EXPORT void makecontext(ucontext_t *ucp, void (*fn)(void), int argc, ...)
{
	long a[UC_FORWARD] = { 0 };
	va_list ap;
	va_start(ap, argc);
	for (int i = 0; i < argc && i < UC_FORWARD; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	AS_RESOLVE(makecontext);
	if (wrap(ucp, fn, argc, a))
		return;
	real_makecontext(ucp, fn, argc, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9],
			 a[10], a[11], a[12], a[13], a[14], a[15], a[16], a[17], a[18], a[19], a[20],
			 a[21], a[22], a[23], a[24], a[25], a[26], a[27], a[28], a[29], a[30], a[31]);
}

/* Outside any task there is nothing to record and, on return, nothing to
 * restore (whoever switched to us cleared the current task): a tail call
 * leaves no frame of ours in the saved context, which keeps the CPU's
 * return prediction as good as without the shim. */
AS_EXPORT int swapcontext(ucontext_t *oucp, const ucontext_t *ucp)
{
	AS_RESOLVE(swapcontext);
	struct as_task *me = as_task_cur;
	if (!me)
		return real_swapcontext(oucp, ucp);
	suspend();
	int r = real_swapcontext(oucp, ucp);
	resumed(me);
	return r;
}

AS_EXPORT int setcontext(const ucontext_t *ucp)
{
	AS_RESOLVE(setcontext);
	struct as_task *me = as_task_cur;
	if (!me)
		return real_setcontext(ucp);
	suspend();
	int r = real_setcontext(ucp);   /* returns only on error */
	resumed(me);
	return r;
}
