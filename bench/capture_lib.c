/* capture_lib.c — preload/stack.c on its own, in a small library, so
 * bench/stacks.c can time the shim's stack capture directly: no sleeping
 * call around it whose scheduler noise would hide a few microseconds. */
#include "shim.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>

struct as_config as_cfg;
__thread struct as_tls as_tls __attribute__((tls_model("initial-exec")));

void as_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static struct as_thread *thr;

AS_EXPORT int capture_init(unsigned depth)
{
	as_cfg.stacks = 1;
	as_cfg.stack_depth = depth;
	as_stack_init();
	thr = mmap(NULL, sizeof(*thr) + 1024 * sizeof(struct as_record), PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (thr == MAP_FAILED)
		return -1;
	thr->cap = 1024;
	return 0;
}

/* One capture as the shim makes it (UC: from a signal handler's context);
 * returns the frames captured.  The ring is emptied at once. */
AS_EXPORT unsigned capture_now(void *uc)
{
	struct as_record *r = as_reserve_stack(thr, uc);
	unsigned n = r ? r->aux : 0;
	if (r)
		as_commit(thr);
	thr->tail = thr->tail_seen = thr->head;
	return n;
}
