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
 * come from pkg-config libunwind; the soname is the one they describe.
 *
 * Why an address space of our own (libunwind-x86_64.so.8, the "remote"
 * API, on this very process) instead of unw_init_local: libunwind 1.6
 * validates every address a local unwind reads (CONSERVATIVE_CHECKS) by
 * write()ing a byte of it into a pipe it opens in the program's fd table
 * (fds 3 and 4 in a fresh process).  A daemon that closes every fd and
 * reuses those numbers then has its own files read, written and, on
 * EBADF, closed by the next capture, and every child it spawns finds the
 * pipe.  Our address space has libunwind's own local accessors but for
 * access_mem, which has the kernel check each page before it is read
 * (readable(): no fd, no side effect) and remembers a few per capture.
 * libunwind validates only in its own local address space, so its pipe
 * code never runs after set-up, and the set-up's pipe2 is refused
 * (as_tls.unwinding, hooks/fd.c): the shim opens no fd for stacks at all.
 *
 * Whose stack: slow paths (a blocking call's finding, a stall sample) run
 * on a stack of the shim's own, mapped when the thread registers
 * (as_on_own_stack), not on the program's: libunwind needs several KiB and
 * the program's may be a 4 KiB coroutine stack.  The switch
 * (as_stack_switch) is an ordinary frame-pointer frame in the CFI, so
 * unwinding from our stack walks on into the program's. */
#include <libunwind.h>

#include "runtime.h"

#include <dlfcn.h>
#include <link.h>
#include <ucontext.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define STR_(x) #x
#define STR(x) STR_(x)

static struct {
	__typeof__(unw_tdep_getcontext) *getcontext;
	__typeof__(unw_get_accessors) *get_accessors;
	__typeof__(unw_create_addr_space) *create_addr_space;
	__typeof__(unw_set_caching_policy) *set_caching_policy;
	__typeof__(unw_init_remote) *init_remote;
	__typeof__(unw_step) *step;
	__typeof__(unw_get_reg) *get_reg;
	unw_addr_space_t *local_as;
} uw;
static int uw_ok;
static unw_addr_space_t self_as;        /* this process, read through read_mem */
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

/* hooks/lock.c: a lock the shim itself takes is not the program's wait */
int as_pc_in_shim(const void *pc)
{
	return in_self((uintptr_t)pc);
}

/* ---- reading our own memory, validated ---- */

#define READ_PAGES 8            /* pages a capture remembers as readable */

/* One capture's state, libunwind's as_arg.  The context comes first:
 * libunwind's local register accessors, which our address space keeps,
 * take the arg for a ucontext. */
struct capture {
	unw_context_t uc;
	int refused;                    /* the probe refused (seccomp) */
	unsigned next;
	uintptr_t page[READ_PAGES];
};

static void capture_begin(struct capture *c)
{
	c->refused = 0;
	c->next = 0;
	memset(c->page, 0, sizeof(c->page));
}

/* The kernel reads PAGE for us: rt_sigprocmask copies the new mask in
 * (8 bytes) before it looks at HOW, so an invalid HOW makes it a pure
 * probe, changing nothing: EINVAL where the page is readable, EFAULT where
 * a corrupt frame points at unmapped or PROT_NONE memory.  Why not
 * process_vm_readv on ourselves: seccomp filters (systemd's @debug in
 * older releases, containers without CAP_SYS_PTRACE) refuse it, some by
 * killing the process; no filter refuses rt_sigprocmask, which glibc
 * calls all the time.  A raw syscall: the shim's own mask hooks must not
 * see it. */
#define PROBE_HOW 0x7fff

static int readable(struct capture *c, uintptr_t page)
{
	for (unsigned i = 0; i < READ_PAGES; i++)
		if (c->page[i] == page)
			return 1;
	long r = syscall(SYS_rt_sigprocmask, PROBE_HOW, (void *)page, NULL, sizeof(uint64_t));
	if (r == 0 || errno != EINVAL) {
		c->refused |= r != 0 && errno != EFAULT;
		return 0;
	}
	c->page[c->next++ % READ_PAGES] = page;
	return 1;
}

static int read_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write, void *arg)
{
	(void)as;
	struct capture *c = arg;
	uintptr_t first = addr & ~(uintptr_t)4095, last = (addr + sizeof(*val) - 1) & ~(uintptr_t)4095;
	if (write || first == 0 || !readable(c, first) || (last != first && !readable(c, last)))
		return -UNW_EINVAL;
	memcpy(val, (const void *)addr, sizeof(*val));
	return 0;
}

/* ---- unwinding ---- */

/* Walk the stack of capture C, after skipping the frames of our own code
 * on top when SKIP_SELF.
 *
 * Why unw_step and not unw_backtrace: unw_backtrace is faster (a
 * per-thread cache of frame layouts) but that cache costs 256 KiB on
 * every thread that ever captures, and setting it up may malloc, so it
 * would have to be set up on every loop thread in advance, outside signal
 * handlers.  unw_step on a cursor allocates nothing per thread and is
 * async-signal-safe (libunwind blocks signals around its global cache's
 * lock): tens of microseconds a stack, paid only by blocking calls and
 * stall samples.  The sample handler never runs while its thread is inside
 * libunwind (as_tls.busy is set around every capture).  unw_init_remote
 * takes frame 0's pc as exact, as UNW_INIT_SIGNAL_FRAME did. */
static unsigned walk(uint64_t *out, unsigned depth, struct capture *c, int skip_self)
{
	unw_cursor_t cur;
	unsigned k = 0;
	if (uw.init_remote(&cur, self_as, c) < 0)
		return 0;
	do {
		unw_word_t ip;
		if (uw.get_reg(&cur, UNW_REG_IP, &ip) < 0 || ip == 0)
			break;
		if (skip_self && in_self(ip))
			continue;
		skip_self = 0;
		out[k++] = ip;
	} while (k < depth && uw.step(&cur) > 0);
	return k;
}

/* The stack of the current call, without our own frames on top: the first
 * frame left is the return address into the caller of the hook, made exact
 * by -1.  *REFUSED tells whether the page probe was refused. */
static unsigned capture_here(uint64_t *out, unsigned depth, int *refused)
{
	struct capture c;
	capture_begin(&c);
	if (uw.getcontext(&c.uc) != 0)
		return 0;
	unsigned k = walk(out, depth, &c, 1);
	if (k)
		out[0] -= 1;
	*refused = c.refused;
	return k;
}

/* The stack interrupted by a signal, from its context: frame 0 is the
 * interrupted pc, exact.  Only the registers are copied. */
static unsigned capture_signal(uint64_t *out, unsigned depth, void *ucontext)
{
	struct capture c;
	capture_begin(&c);
	memcpy(&c.uc, ucontext, offsetof(ucontext_t, uc_mcontext) + sizeof(mcontext_t));
	return walk(out, depth, &c, 0);
}

static void *need(void *h, const char *name)
{
	void *p = dlsym(h, name);
	if (!p)
		uw_ok = -1;
	return p;
}

/* Once, in the constructor (single-threaded): load libunwind, make our
 * address space and unwind once, so its one-time set-up never runs inside
 * a signal handler. */
void as_stack_init(void)
{
	dl_iterate_phdr(find_self, NULL);
	if (!as_cfg.stacks)
		return;
	void *h = dlopen("libunwind-x86_64.so.8", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		as_warn("asyncshim: cannot load libunwind-x86_64.so.8; findings will have no stacks");
		return;
	}
	uw.getcontext = (__typeof__(uw.getcontext))need(h, STR(unw_tdep_getcontext));
	uw.get_accessors = (__typeof__(uw.get_accessors))need(h, STR(unw_get_accessors));
	uw.create_addr_space = (__typeof__(uw.create_addr_space))need(h, STR(unw_create_addr_space));
	uw.set_caching_policy = (__typeof__(uw.set_caching_policy))need(h, STR(unw_set_caching_policy));
	uw.init_remote = (__typeof__(uw.init_remote))need(h, STR(unw_init_remote));
	uw.step = (__typeof__(uw.step))need(h, STR(unw_step));
	uw.get_reg = (__typeof__(uw.get_reg))need(h, STR(unw_get_reg));
	uw.local_as = (unw_addr_space_t *)need(h, STR(unw_local_addr_space));
	if (uw_ok < 0) {
		uw_ok = 0;
		as_warn("asyncshim: libunwind-x86_64.so.8 lacks unw_init_remote; findings will have no stacks");
		return;
	}
	as_tls.unwinding = 1;   /* its set-up's validation pipe is refused */
	unw_accessors_t acc = *uw.get_accessors(*uw.local_as);
	as_tls.unwinding = 0;
	acc.access_mem = read_mem;
	self_as = uw.create_addr_space(&acc, 0);
	if (!self_as)
		return;
	uw.set_caching_policy(self_as, UNW_CACHE_GLOBAL);   /* the local space's default */
	uw_ok = 1;
	uint64_t pcs[4];
	int refused = 0;
	as_tls.unwinding = 1;
	capture_here(pcs, 4, &refused);
	as_tls.unwinding = 0;
	if (refused) {
		uw_ok = 0;
		as_warn("asyncshim: rt_sigprocmask refused (seccomp?); findings will have no stacks");
	}
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
	if (uw_ok && as_cfg.stacks) {
		int refused;
		as_tls.unwinding = 1;
		n = ucontext ? capture_signal(pcs, depth, ucontext) : capture_here(pcs, depth, &refused);
		as_tls.unwinding = 0;
	}
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

/* ---- the shim's own stack for slow paths ---- */

#define OWN_STACK (64 * 1024)   /* libunwind takes several KiB; program
				 * signal handlers may run on it too */
#define GUARD 4096

/* as_stack_switch(fn, arg, top): fn(arg) with the stack pointer at TOP,
 * back on the caller's stack when it returns.  An rbp frame in the CFI:
 * unwinders step from fn's frames back to the caller's stack. */
AS_HIDDEN void as_stack_switch(void (*fn)(void *), void *arg, void *top);
__asm__(".pushsection .text\n"
	".globl as_stack_switch\n"
	".hidden as_stack_switch\n"
	".type as_stack_switch, @function\n"
	".p2align 4\n"
	"as_stack_switch:\n"
	"	.cfi_startproc\n"
	"	pushq %rbp\n"
	"	.cfi_def_cfa_offset 16\n"
	"	.cfi_offset %rbp, -16\n"
	"	movq %rsp, %rbp\n"
	"	.cfi_def_cfa_register %rbp\n"
	"	movq %rdx, %rsp\n"
	"	movq %rdi, %rax\n"
	"	movq %rsi, %rdi\n"
	"	callq *%rax\n"
	"	movq %rbp, %rsp\n"
	"	.cfi_def_cfa_register %rsp\n"
	"	popq %rbp\n"
	"	.cfi_def_cfa_offset 8\n"
	"	ret\n"
	"	.cfi_endproc\n"
	".size as_stack_switch, .-as_stack_switch\n"
	".popsection\n");

/* At registration, never in the hot path: a guard page below, so an
 * overflow faults instead of writing over a neighbour.  Without it
 * (no memory) slow paths run on the program's stack as before. */
void as_own_stack_map(void)
{
	if (as_tls.own_stack)
		return;
	char *p = mmap(NULL, GUARD + OWN_STACK, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (p == MAP_FAILED)
		return;
	mprotect(p, GUARD, PROT_NONE);
	as_tls.own_stack = p + GUARD;
}

/* At thread exit (after which the thread takes no slow path). */
void as_own_stack_unmap(void)
{
	char *lo = as_tls.own_stack;
	as_tls.own_stack = NULL;
	if (lo)
		munmap(lo - GUARD, GUARD + OWN_STACK);
}

/* fn(arg) on the thread's own stack.  Already on it (a signal handler's
 * slow path nested in ours), or without one: in place.  Where we are is
 * read from the stack pointer, not from a flag, so a program handler that
 * longjmp()s out of a slow path leaves nothing stale behind. */
void as_on_own_stack(void (*fn)(void *), void *arg)
{
	char *lo = as_tls.own_stack, *here = __builtin_frame_address(0);
	if (!lo || (here >= lo - GUARD && here < lo + OWN_STACK)) {
		fn(arg);
		return;
	}
	as_stack_switch(fn, arg, lo + OWN_STACK);
}
