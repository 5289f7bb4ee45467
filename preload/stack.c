/* stack.c — call stacks for findings, captured with libunwind.
 *
 * Who pays: only calls already over block_ms (as_blocking) and stall
 * samples (the signal handler in watchdog.c).  Fast calls never get here.
 *
 * Where the frames go: into the thread's own ring, in FRAMES records (three
 * addresses each) reserved together with the record they belong to
 * (as_reserve_n).  So capturing allocates nothing, is async-signal-safe
 * (the ring protocol already tolerates a handler pushing in the middle of a
 * push), is bounded by buffer_kb, and the collector sees a stack exactly when
 * it sees its record.  A stack that does not fit the ring is left out (the
 * record keeps stack 0).  The collector interns stacks (collector/stacks.c).
 *
 * Frame convention (also in docs/trace-format.md): frame 0 is an exact
 * instruction address, frames 1.. are return addresses.  A sample's frame 0
 * is the interrupted pc; a blocking call's is its return address minus one,
 * which lies inside the call instruction of the program's own code.
 *
 * Why libunwind is dlopen()ed with RTLD_LOCAL instead of being a DT_NEEDED
 * of libasyncshim.so: Debian's libunwind.so.8 also exports the C++
 * exception ABI (_Unwind_RaiseException & co.).  As a dependency of a
 * preloaded library it sits in the global scope, ahead of libgcc_s for
 * everything loaded later (a Python C++ extension, a plugin), and takes over
 * their exception handling.  Loaded locally it serves only us.  Its headers
 * come from pkg-config libunwind; the soname is the one they describe. */
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "shim.h"

#include <dlfcn.h>
#include <link.h>
#include <ucontext.h>
#include <string.h>

#define STR_(x) #x
#define STR(x) STR_(x)

static struct {
	__typeof__(unw_tdep_getcontext) *getcontext;
	__typeof__(unw_init_local2) *init_local2;
	__typeof__(unw_step) *step;
	__typeof__(unw_get_reg) *get_reg;
} uw;
static int uw_ok;
static uintptr_t self_lo, self_hi;      /* our own code: not the program's */

static int find_self(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size, (void)arg;
	uintptr_t lo = UINTPTR_MAX, hi = 0, me = (uintptr_t)&as_stack_init;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;
		lo = a < lo ? a : lo;
		hi = a + ph->p_memsz > hi ? a + ph->p_memsz : hi;
	}
	if (me < lo || me >= hi)
		return 0;
	self_lo = lo;
	self_hi = hi;
	return 1;
}

static int in_self(uintptr_t pc)
{
	return pc >= self_lo && pc < self_hi;
}

static unsigned capture_here(uint64_t *out, unsigned depth);

/* Once, in the constructor (single-threaded): load libunwind and unwind
 * once, so its one-time set-up never runs inside a signal handler. */
void as_stack_init(void)
{
	dl_iterate_phdr(find_self, NULL);
	if (!as_cfg.stacks)
		return;
	void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		as_warn("asyncshim: cannot load libunwind.so.8; findings will have no stacks");
		return;
	}
	uw.getcontext = (__typeof__(uw.getcontext))dlsym(h, STR(unw_tdep_getcontext));
	uw.init_local2 = (__typeof__(uw.init_local2))dlsym(h, STR(unw_init_local2));
	uw.step = (__typeof__(uw.step))dlsym(h, STR(unw_step));
	uw.get_reg = (__typeof__(uw.get_reg))dlsym(h, STR(unw_get_reg));
	if (!uw.getcontext || !uw.init_local2 || !uw.step || !uw.get_reg) {
		as_warn("asyncshim: libunwind.so.8 lacks unw_init_local2; findings will have no stacks");
		return;
	}
	uw_ok = 1;
	uint64_t pcs[4];
	capture_here(pcs, 4);   /* libunwind's one-time set-up, here */
}

/* Walk the stack of CTX, after skipping the frames of our own code on top
 * when SKIP_SELF.
 *
 * Why unw_step and not unw_backtrace: unw_backtrace is faster (a
 * per-thread cache of frame layouts) but that cache costs 256 KiB on
 * every thread that ever captures, and setting it up may malloc, so it
 * would have to be set up on every loop thread in advance, outside signal
 * handlers.  unw_step on a local cursor allocates nothing per thread and is
 * async-signal-safe (libunwind blocks signals around its global cache's
 * lock): tens of microseconds a stack, paid only by blocking calls and
 * stall samples.  The sample handler never runs while its thread is inside
 * libunwind (as_tls.busy is set around every capture). */
static unsigned walk(uint64_t *out, unsigned depth, unw_context_t *ctx, int flags, int skip_self)
{
	unw_cursor_t c;
	unsigned k = 0;
	if (uw.init_local2(&c, ctx, flags) < 0)
		return 0;
	do {
		unw_word_t ip;
		if (uw.get_reg(&c, UNW_REG_IP, &ip) < 0 || ip == 0)
			break;
		if (skip_self && in_self(ip))
			continue;
		skip_self = 0;
		out[k++] = ip;
	} while (k < depth && uw.step(&c) > 0);
	return k;
}

/* The stack of the current call, without our own frames on top: the first
 * frame left is the return address into the caller of the hook, made exact
 * by -1. */
static unsigned capture_here(uint64_t *out, unsigned depth)
{
	unw_context_t ctx;
	if (uw.getcontext(&ctx) != 0)
		return 0;
	unsigned k = walk(out, depth, &ctx, 0, 1);
	if (k)
		out[0] -= 1;
	return k;
}

/* The stack interrupted by a signal, from its context: frame 0 is the
 * interrupted pc, exact. */
static unsigned capture_signal(uint64_t *out, unsigned depth, void *ucontext)
{
	return walk(out, depth, (unw_context_t *)ucontext, UNW_INIT_SIGNAL_FRAME, 0);
}

/* Reserve a record followed by the FRAMES of the current stack (of the
 * interrupted context when UCONTEXT is given).  The caller fills in the
 * first record, leaving stack and aux alone, and calls as_commit. */
struct as_record *as_reserve_stack(struct as_thread *t, void *ucontext)
{
	uint64_t pcs[AS_STACK_MAX];
	unsigned n = 0, depth = as_cfg.stack_depth ? as_cfg.stack_depth : 1;
	if (depth > AS_STACK_MAX)
		depth = AS_STACK_MAX;
	if (uw_ok && as_cfg.stacks)
		n = ucontext ? capture_signal(pcs, depth, ucontext) : capture_here(pcs, depth);
	unsigned k = (n + 2) / 3;
	struct as_record *r = k ? as_reserve_n(t, 1 + k) : NULL;
	if (!r) {
		k = n = 0;
		if (!(r = as_reserve(t)))
			return NULL;
	}
	memset(r, 0, sizeof(*r));
	r->stack = k;
	r->aux = n;
	uint64_t pos = (uint64_t)(r - t->ring);
	for (unsigned j = 0; j < k; j++) {
		struct as_record *f = &t->ring[(pos + 1 + j) & (t->cap - 1)];
		const uint64_t *a = pcs + 3 * j;
		unsigned m = n - 3 * j < 3 ? n - 3 * j : 3;
		memset(f, 0, sizeof(*f));
		f->kind = AS_REC_FRAMES;
		f->call = (uint8_t)m;
		f->ts = a[0];
		f->dur = m > 1 ? a[1] : 0;
		f->stack = m > 2 ? (uint32_t)a[2] : 0;
		f->aux = m > 2 ? (uint32_t)(a[2] >> 32) : 0;
	}
	return r;
}
