/* offcpu.c — the watchdog's look at a loop thread that is stuck in one
 * iteration but not running (see offcpu.h for what goes where).
 *
 * Nothing here touches the looked-at thread: no signal (a signal in a
 * syscall would end a sleep with EINTR or a pipe write short), no ptrace
 * (the kernel refuses it within a thread group anyway).  The kernel tells
 * another thread of the process which syscall a sleeping thread is in, with
 * its arguments, stack pointer and pc (/proc/self/task/TID/syscall); the
 * stack is unwound from there with libunwind's remote interface whose
 * accessors read our own memory with process_vm_readv, so a stack that
 * changes or goes away under us gives a short stack, never a fault.
 *
 * The one register the kernel does not give is rbp, which code built with
 * frame pointers needs to find its caller.  Candidates come from the stack
 * itself (a word pointing further up the stack next to a return address:
 * a saved frame pointer); each is tried and the longest unwind wins.
 *
 * A wait made inside a hook (a shim frame on the stack, or the shim's own
 * raw syscall) is timed by that hook: it is not reported twice. */
#include <libunwind.h>

#include "runtime.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <urcu/uatomic.h>

#define STR_(x) #x
#define STR(x) STR_(x)

static struct {
	__typeof__(unw_create_addr_space) *create_addr_space;
	__typeof__(unw_get_accessors) *get_accessors;
	__typeof__(unw_init_remote) *init_remote;
	__typeof__(unw_step) *step;
	__typeof__(unw_get_reg) *get_reg;
	__typeof__(unw_set_caching_policy) *set_caching;
} uw;
static unw_addr_space_t space;

/* ---- reading our own memory without faulting ---- */

#define PAGES 16
static struct page {
	uint64_t addr;          /* page address, 0 = empty */
	int ok;
	unsigned char b[4096];
} pages[PAGES];

static void pages_clear(void)
{
	for (int i = 0; i < PAGES; i++)
		pages[i].addr = 0;
}

static int read_word(uint64_t addr, uint64_t *val)
{
	uint64_t base = addr & ~4095ull, off = addr & 4095;
	if (off > 4096 - 8)
		return -1;      /* unaligned across pages: never needed for stacks */
	struct page *p = &pages[(base >> 12) % PAGES];
	if (p->addr != base) {
		struct iovec local = { p->b, 4096 }, remote = { (void *)base, 4096 };
		p->addr = base;
		/* by our own tid: the main thread may have exited (pthread_exit) */
		p->ok = process_vm_readv(as_gettid(), &local, 1, &remote, 1, 0) == 4096;
	}
	if (!p->ok)
		return -1;
	memcpy(val, p->b + off, 8);
	return 0;
}

/* ---- code ranges: a return address must point into one ---- */

#define RANGES 512
static struct { uint64_t lo, hi; } code[RANGES];
static unsigned ncode;
static uint64_t self_lo, self_hi;

static int note_code(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size, (void)arg;
	for (int i = 0; i < info->dlpi_phnum && ncode < RANGES; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		uint64_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
		code[ncode].lo = lo;
		code[ncode++].hi = hi;
		uint64_t me = (uint64_t)(uintptr_t)&as_offcpu_look;
		if (me >= lo && me < hi)
			self_lo = lo, self_hi = hi;
	}
	return 0;
}

static int is_code(uint64_t pc)
{
	for (unsigned i = 0; i < ncode; i++)
		if (pc >= code[i].lo && pc < code[i].hi)
			return 1;
	return 0;
}

/* A return address follows a call instruction (E8 rel32, or FF /2). */
static int after_call(uint64_t ra)
{
	uint64_t w;
	if (!is_code(ra) || read_word(ra - 8, &w) != 0)
		return 0;
	unsigned char b[8];
	memcpy(b, &w, 8);       /* b[7] is the byte at ra - 1 */
	if (b[3] == 0xe8)
		return 1;
	if (b[6] == 0xff && (b[7] & 0xf8) == 0xd0)
		return 1;                                       /* call *%reg */
	if (b[5] == 0xff && (b[6] & 0x38) == 0x10 && (b[6] & 0xc0) == 0x40)
		return 1;                                       /* call *d8(%reg) */
	if (b[2] == 0xff && (b[3] & 0x38) == 0x10 && ((b[3] & 0xc0) == 0x80 || (b[3] & 0xc7) == 0x05))
		return 1;                                       /* call *d32(%reg), *x(%rip) */
	if (b[1] == 0xff && (b[2] & 0x38) == 0x10 && (b[2] & 0xc7) == 0x84)
		return 1;                                       /* with a SIB byte */
	return 0;
}

/* ---- libunwind's remote interface over our own memory ---- */

struct regs {
	uint64_t pc, sp, bp;
};

static int acc_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write, void *arg)
{
	(void)as, (void)arg;
	if (write)
		return -UNW_EINVAL;
	uint64_t v;
	if (read_word(addr, &v) != 0)
		return -UNW_EINVAL;
	*val = v;
	return 0;
}

static int acc_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t *val, int write, void *arg)
{
	(void)as;
	const struct regs *r = arg;
	if (write)
		return -UNW_EREADONLYREG;
	*val = reg == UNW_REG_IP ? r->pc : reg == UNW_REG_SP ? r->sp : reg == UNW_X86_64_RBP ? r->bp : 0;
	return 0;
}

static int acc_fpreg(unw_addr_space_t as, unw_regnum_t reg, unw_fpreg_t *val, int write, void *arg)
{
	(void)as, (void)reg, (void)val, (void)write, (void)arg;
	return -UNW_EBADREG;
}

static int acc_resume(unw_addr_space_t as, unw_cursor_t *c, void *arg)
{
	(void)as, (void)c, (void)arg;
	return -UNW_EINVAL;
}

static int acc_name(unw_addr_space_t as, unw_word_t addr, char *buf, size_t len, unw_word_t *off, void *arg)
{
	(void)as, (void)addr, (void)buf, (void)len, (void)off, (void)arg;
	return -UNW_ENOINFO;
}

/* Once, from the constructor: loading a library later, on the watchdog
 * thread, could race a fork of the program. */
void as_offcpu_init(void)
{
	void *h = dlopen("libunwind-x86_64.so.8", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return;         /* waits are still reported, without stacks */
	uw.create_addr_space = (__typeof__(uw.create_addr_space))dlsym(h, STR(unw_create_addr_space));
	uw.get_accessors = (__typeof__(uw.get_accessors))dlsym(h, STR(unw_get_accessors));
	uw.init_remote = (__typeof__(uw.init_remote))dlsym(h, STR(unw_init_remote));
	uw.step = (__typeof__(uw.step))dlsym(h, STR(unw_step));
	uw.get_reg = (__typeof__(uw.get_reg))dlsym(h, STR(unw_get_reg));
	uw.set_caching = (__typeof__(uw.set_caching))dlsym(h, STR(unw_set_caching_policy));
	unw_addr_space_t *local = (unw_addr_space_t *)dlsym(h, STR(unw_local_addr_space));
	if (!uw.create_addr_space || !uw.get_accessors || !uw.init_remote || !uw.step || !uw.get_reg ||
	    !uw.set_caching || !local)
		return;
	/* the local space finds unwind tables with dl_iterate_phdr and reads
	 * them through the space it is given: ours */
	unw_accessors_t acc = *uw.get_accessors(*local);
	acc.access_mem = acc_mem;
	acc.access_reg = acc_reg;
	acc.access_fpreg = acc_fpreg;
	acc.resume = acc_resume;
	acc.get_proc_name = acc_name;
	space = uw.create_addr_space(&acc, 0);
	if (space)
		uw.set_caching(space, UNW_CACHE_NONE);
}

static unsigned unwind(const struct regs *r, uint64_t *pcs, unsigned max)
{
	unw_cursor_t c;
	unsigned n = 0;
	struct regs copy = *r;
	if (!space || uw.init_remote(&c, space, &copy) < 0)
		return 0;
	do {
		unw_word_t ip;
		if (uw.get_reg(&c, UNW_REG_IP, &ip) < 0 || !is_code(ip))
			break;
		pcs[n++] = ip;
	} while (n < max && uw.step(&c) > 0);
	return n;
}

/* The stack a thread sleeps in, from its syscall's sp and pc. */
static unsigned stack_at(uint64_t sp, uint64_t pc, uint64_t *pcs, unsigned max)
{
	uint64_t best[AS_OFF_FRAMES];
	struct regs r = { pc, sp, 0 };
	pages_clear();
	ncode = 0;
	dl_iterate_phdr(note_code, NULL);
	unsigned n = unwind(&r, pcs, max), tries = 0;
	/* frame pointers: words that point up the stack next to a return address */
	for (uint64_t a = sp; a < sp + 16384 && tries < 8; a += 8) {
		uint64_t up, ra;
		if (read_word(a, &up) != 0)
			break;
		if (up <= a || up > a + (1u << 20) || read_word(a + 8, &ra) != 0 || !after_call(ra))
			continue;
		tries++;
		r.bp = a;
		unsigned k = unwind(&r, best, max);
		if (k > n) {
			memcpy(pcs, best, k * sizeof(uint64_t));
			n = k;
		}
	}
	return n;
}

static void end_wait(struct as_thread *t, uint64_t now);

static int in_shim(const uint64_t *pcs, unsigned n)
{
	for (unsigned i = 0; i < n && i < 6; i++)
		if (pcs[i] >= self_lo && pcs[i] < self_hi)
			return 1;
	return 0;
}

/* ---- /proc ---- */

static int read_proc(pid_t tid, const char *what, char *buf, size_t size)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/%s", (int)tid, what);
	int fd = as_sys_open(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	ssize_t n = as_sys_read(fd, buf, size - 1);
	as_sys_close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

static uint32_t fd_kind(pid_t tid, long fd)
{
	char path[64];
	struct stat st;
	snprintf(path, sizeof(path), "/proc/self/task/%d/fd/%ld", (int)tid, fd);
	if (stat(path, &st) != 0)
		return AS_FD_NONE;
	/* not our fd table: a tty is told by its device's major (consoles, ptys) */
	unsigned major = major(st.st_rdev);
	if (S_ISCHR(st.st_mode) && (major == 4 || major == 5 || (major >= 136 && major <= 143)))
		return AS_FD_TTY;
	return as_fd_kind_of(&st);
}

/* Syscalls whose first argument is an fd. */
static int fd_first(long nr)
{
	switch (nr) {
	case SYS_read: case SYS_write: case SYS_pread64: case SYS_pwrite64: case SYS_readv:
	case SYS_writev: case SYS_preadv: case SYS_pwritev: case SYS_preadv2: case SYS_pwritev2:
	case SYS_recvfrom: case SYS_sendto: case SYS_recvmsg: case SYS_sendmsg: case SYS_recvmmsg:
	case SYS_sendmmsg: case SYS_connect: case SYS_accept: case SYS_accept4: case SYS_fsync:
	case SYS_fdatasync: case SYS_flock: case SYS_fcntl: case SYS_ioctl: case SYS_sendfile:
	case SYS_splice: case SYS_tee: case SYS_epoll_wait: case SYS_epoll_pwait: case SYS_epoll_pwait2:
	case SYS_ftruncate: case SYS_fallocate: case SYS_sync_file_range: case SYS_syncfs:
		return 1;
	default:
		return 0;
	}
}

struct syscall_now {
	long nr;                        /* -1: not in a syscall */
	uint64_t arg0, sp, pc;
};

static int in_syscall(pid_t tid, struct syscall_now *s)
{
	char buf[256];
	unsigned long long a[6], sp, pc;
	if (read_proc(tid, "syscall", buf, sizeof(buf)) != 0)
		return 0;
	if (sscanf(buf, "%ld %llx %llx %llx %llx %llx %llx %llx %llx", &s->nr, &a[0], &a[1], &a[2], &a[3], &a[4],
		   &a[5], &sp, &pc) != 9)
		return 0;       /* "running", or "-1 sp pc": not in a syscall */
	s->arg0 = a[0];
	s->sp = sp;
	s->pc = pc;
	return s->nr >= 0;
}

/* run and runqueue ns so far */
static int sched_now(pid_t tid, uint64_t *run, uint64_t *runq)
{
	char buf[128];
	unsigned long long r, q;
	if (read_proc(tid, "schedstat", buf, sizeof(buf)) != 0 || sscanf(buf, "%llu %llu", &r, &q) != 2)
		return -1;
	*run = r;
	*runq = q;
	return 0;
}

/* ---- findings to the collector ---- */

static void queue(struct as_thread *t, const struct as_off_event *e)
{
	struct as_offcpu *o = &t->off;
	uint64_t head = o->head;
	if (head - CMM_LOAD_SHARED(o->tail) >= AS_OFF_QUEUE) {
		__atomic_fetch_add(&t->dropped, 1, __ATOMIC_RELAXED);
		return;
	}
	o->q[head % AS_OFF_QUEUE] = *e;
	cmm_smp_wmb();
	CMM_STORE_SHARED(o->head, head + 1);
}

void as_offcpu_end_wait(struct as_thread *t, uint64_t now)
{
	end_wait(t, now);
}

static void end_wait(struct as_thread *t, uint64_t now)
{
	struct as_offcpu *o = &t->off;
	if (!o->in_wait)
		return;
	o->in_wait = 0;
	if (o->hooked)
		return;
	o->cur.dur = now - o->cur.ts;
	queue(t, &o->cur);
}

static void begin_wait(struct as_thread *t, const struct syscall_now *s)
{
	struct as_offcpu *o = &t->off;
	struct as_off_event *e = &o->cur;
	o->in_wait = 1;
	o->nr = s->nr;
	o->sp = s->sp;
	o->pc = s->pc;
	o->arg0 = s->arg0;
	memset(e, 0, offsetof(struct as_off_event, pcs));
	e->kind = AS_OFF_WAIT;
	e->iter = o->iter;
	e->ts = o->prev_look;   /* it was not in it then: the earliest it began */
	e->nr = (int32_t)s->nr;
	e->fd = fd_first(s->nr) && s->arg0 < INT32_MAX ? (int32_t)s->arg0 : -1;
	e->fd_kind = e->fd >= 0 ? fd_kind(t->tid, e->fd) : AS_FD_NONE;
	unsigned depth = as_cfg.stacks ? as_cfg.stack_depth : 0;
	e->npcs = stack_at(s->sp, s->pc, e->pcs, depth < AS_OFF_FRAMES ? depth : AS_OFF_FRAMES);
	o->hooked = in_shim(e->pcs, e->npcs) || (s->pc >= self_lo && s->pc < self_hi);
}

static int same_wait(const struct as_offcpu *o, const struct syscall_now *s)
{
	return o->in_wait && o->nr == s->nr && o->sp == s->sp && o->pc == s->pc && o->arg0 == s->arg0;
}

/* The iteration T was watched in is over: its last wait ends and its
 * scheduler figures go out, then the collector may write it. */
void as_offcpu_done(struct as_thread *t, uint64_t now)
{
	struct as_offcpu *o = &t->off;
	if (!o->iter)
		return;
	end_wait(t, now);
	if (o->have_base) {
		uint64_t run, runq;
		/* back in its wait: what it ran since is nearly nothing */
		if (!CMM_LOAD_SHARED(t->iter_start) && sched_now(t->tid, &run, &runq) == 0) {
			o->run1 = run;
			o->runq1 = runq;
			o->mono1 = as_mono_ns();
		}
		struct as_off_event e;
		memset(&e, 0, offsetof(struct as_off_event, pcs));
		e.kind = AS_OFF_SCHED;
		e.iter = o->iter;
		e.run_ns = o->run1 - o->run0;
		e.runq_ns = o->runq1 - o->runq0;
		e.window_ns = o->mono1 - o->mono0;
		e.runnable = o->looks_runnable;
		e.asleep = o->looks_asleep;
		queue(t, &e);
	}
	o->iter = 0;
	o->have_base = 0;
	o->looks_runnable = o->looks_asleep = 0;
	cmm_smp_wmb();
	CMM_STORE_SHARED(o->open, 0);
}

int as_offcpu_look(struct as_thread *t, uint64_t start, uint64_t now, int sig)
{
	struct as_offcpu *o = &t->off;
	if (o->iter != start) {
		as_offcpu_done(t, now);
		o->iter = start;
		o->prev_look = start;
		CMM_STORE_SHARED(o->open, start);
		cmm_smp_mb();   /* the collector holds this iteration's record from here */
		if (CMM_LOAD_SHARED(t->iter_start) != start) {
			as_offcpu_done(t, now);
			return 0;
		}
	}
	uint64_t run, runq;
	/* the state last: a sample signal follows it at once */
	if (sched_now(t->tid, &run, &runq) == 0) {
		if (!o->have_base) {
			o->run0 = run;
			o->runq0 = runq;
			o->mono0 = as_mono_ns();
			o->have_base = 1;
		}
		o->run1 = run;
		o->runq1 = runq;
		o->mono1 = as_mono_ns();
	}
	char buf[4096];
	int running = 0;
	if (read_proc(t->tid, "status", buf, sizeof(buf)) == 0) {
		const char *state = strstr(buf, "\nState:\t"), *blk = strstr(buf, "\nSigBlk:\t");
		struct syscall_now s;
		if (state && state[8] == 'R')
			o->looks_runnable++;
		else if (state)
			o->looks_asleep++;
		if (state && state[8] == 'R') {
			end_wait(t, now);
			running = blk && sig && !(strtoull(blk + 9, NULL, 16) & (1ull << (sig - 1)));
		} else if (state && in_syscall(t->tid, &s)) {
			if (!same_wait(o, &s)) {
				end_wait(t, now);
				begin_wait(t, &s);
			}
		} else {
			end_wait(t, now);
		}
	}
	o->prev_look = now;
	return running;
}

void as_offcpu_forget(struct as_thread *t)
{
	memset(&t->off, 0, sizeof(t->off));
}

/* ---- syscall names ---- */

#define N(x) [SYS_##x] = #x
static const char *const names[] = {
	N(read), N(write), N(open), N(close), N(poll), N(ioctl), N(pread64), N(pwrite64), N(readv),
	N(writev), N(select), N(sched_yield), N(nanosleep), N(pause), N(sendfile), N(connect), N(accept),
	N(sendto), N(recvfrom), N(sendmsg), N(recvmsg), N(wait4), N(fcntl), N(flock), N(fsync),
	N(fdatasync), N(ftruncate), N(truncate), N(rename), N(mkdir), N(rmdir), N(unlink), N(msgsnd),
	N(msgrcv), N(semop), N(rt_sigtimedwait), N(rt_sigsuspend), N(futex), N(epoll_wait), N(clock_nanosleep),
	N(waitid), N(openat), N(pselect6), N(ppoll), N(splice), N(tee), N(sync_file_range), N(epoll_pwait),
	N(fallocate), N(accept4), N(recvmmsg), N(sendmmsg), N(syncfs), N(preadv), N(pwritev), N(preadv2),
	N(pwritev2), N(epoll_pwait2), N(sync), N(mmap), N(munmap), N(mprotect), N(madvise), N(msync),
	N(getrandom), N(io_getevents), N(io_uring_enter), N(semtimedop), N(mq_timedsend), N(mq_timedreceive),
	N(stat), N(lstat), N(fstat), N(newfstatat), N(statx), N(getdents64), N(execve), N(clone), N(clone3),
	N(vfork), N(exit_group), N(unlinkat), N(renameat), N(renameat2), N(close_range), N(shutdown),
};
#undef N

const char *as_syscall_name(int nr, char *buf, unsigned size)
{
	if (nr >= 0 && (size_t)nr < sizeof(names) / sizeof(names[0]) && names[nr])
		return names[nr];
	snprintf(buf, size, "syscall_%d", nr);
	return buf;
}
