/* gate.c — the in-process gate: ASYNCSHIM_OPTIONS=gate=1:exitcode=N[:suppress=FILE].
 *
 * Sanitizer style: a program that had a blocking call (>= block_ms) on a loop
 * thread exits with status N and a short report on stderr, so
 * `LD_PRELOAD=libasyncshim.so make check` fails without post-processing.
 *
 * How it learns about blocking calls: the collector calls as_gate_note() for
 * every blocking call it writes to the trace (on its own thread, under its
 * lock, never on the hot path), as_gate_note_wait() for every wait the
 * watchdog found (collector/offcpu.c); the gate keeps one entry per call
 * and stack.
 *
 * How it learns the exit status: an on_exit() handler, registered in the
 * constructor, is given the status passed to exit() -- also when main
 * returns, since glibc calls exit() with main's value (a hook on exit()
 * would miss that call, which stays inside libc).  _exit(), _Exit() and
 * deaths by signal run no exit handlers and are never gated.
 *
 * How it sets the exit status: once both the destructor has written the
 * trace and the exit handler has seen the status -- in whichever order they
 * run: a preloaded library's constructor runs before __libc_start_main
 * registers the destructors' handler, so exit handlers registered by it run
 * last, after every destructor -- and only if the program was exiting with
 * status 0, the gate prints the report, flushes stdio and calls _exit(N).
 * A program that exits non-zero on its own keeps its code.
 *
 * Symbols: suppressions and the report need function names inside the
 * process.  dladdr() only knows exported symbols, so when there is something
 * to judge, the gate dlopen()s libdw (elfutils) at exit and reads .symtab and
 * DWARF like the tools do; the library has no link dependency on libdw, and
 * falls back to dladdr() when libdw is not installed. */
#include "runtime.h"
#include "../format/suppress.h"

#include <dlfcn.h>
#include <elfutils/libdwfl.h>   /* types only: libdw is dlopen'd, never linked */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GATE_FRAMES 64     /* frames looked at per stack */
#define GATE_SHOWN 10      /* call sites listed in the report */
#define GATE_LABEL 3       /* own frames shown per call site */

struct gate_finding {
	pid_t tid;
	char thread[16];
	char call[24];          /* a hook's call name, or the syscall a watchdog wait was in */
	uint8_t fd_kind, watchdog;
	int32_t fd;
	uint32_t stack;
	uint64_t count, max_ns, total_ns;
	int suppressed;
};

struct gate_frame {
	const char *function, *module, *file;
	int line;
};

static struct gate_finding *found;
static size_t nfound, capfound;
static uint64_t unrecorded;      /* notes that found no memory: judged as failures */
static struct as_sup rules;
static int exit_seen, exit_status;
static int trace_written;       /* the destructor's final flush is done */

static void verdict(void);

/* ---- set-up ---- */

static void note_exit_status(int status, void *arg)
{
	(void)arg;
	exit_status = status;
	exit_seen = 1;
	if (trace_written)
		verdict();
}

#define GATE_RULES_MAX (1u << 20)

/* The suppression file, read with the runtime's own calls (preload/sys.h). */
static int load_rules(const char *path, char *err, size_t errlen)
{
	int fd = as_sys_open(path, O_RDONLY | O_CLOEXEC, 0);
	char *text = fd >= 0 ? malloc(GATE_RULES_MAX) : NULL;
	size_t len = 0;
	ssize_t n = 0;
	while (text && len < GATE_RULES_MAX && (n = as_sys_read(fd, text + len, GATE_RULES_MAX - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		len += (size_t)n;
	}
	int e = fd < 0 ? errno : !text ? ENOMEM : n < 0 ? errno : len == GATE_RULES_MAX ? EFBIG : 0;
	if (fd >= 0)
		as_sys_close(fd);
	int rc = -1;
	if (e)
		snprintf(err, errlen, "%s: cannot read suppressions: %s", path, strerror(e));
	else
		rc = as_sup_parse(&rules, path, text, len, err, errlen);
	free(text);
	return rc;
}

int as_gate_init(char *err, size_t errlen)
{
	if (!as_cfg.gate)
		return 0;
	if (as_cfg.suppress[0] && load_rules(as_cfg.suppress, err, errlen) != 0)
		return -1;
	if (on_exit(note_exit_status, NULL) != 0) {
		snprintf(err, errlen, "cannot register the gate's exit handler");
		return -1;
	}
	return 0;
}

/* A fork child judges only its own blocking calls. */
void as_gate_after_fork_child(void)
{
	nfound = 0;
	unrecorded = 0;
	exit_seen = 0;
}

/* ---- collecting (collector thread) ---- */

static void thread_name(pid_t tid, char *buf, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)tid);
	int fd = as_sys_open(path, O_RDONLY | O_CLOEXEC, 0);
	ssize_t n = fd >= 0 ? as_sys_read(fd, buf, len - 1) : -1;
	if (fd >= 0)
		as_sys_close(fd);
	buf[n > 0 ? n : 0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

static void note(pid_t tid, const char *call, int watchdog, int fd, int fd_kind, uint32_t stack, uint64_t dur_ns)
{
	if (!as_cfg.gate)
		return;
	struct gate_finding *g = NULL;
	for (size_t i = 0; i < nfound && !g; i++)
		if (found[i].watchdog == watchdog && !strcmp(found[i].call, call) && found[i].stack == stack &&
		    (stack || found[i].tid == tid))
			g = &found[i];
	if (!g) {
		if (nfound == capfound) {
			size_t cap = capfound ? capfound * 2 : 16;
			struct gate_finding *p = realloc(found, cap * sizeof(*p));
			if (!p) {
				unrecorded++;
				return;
			}
			found = p;
			capfound = cap;
		}
		g = &found[nfound++];
		memset(g, 0, sizeof(*g));
		g->tid = tid;
		snprintf(g->call, sizeof(g->call), "%s", call);
		g->watchdog = (uint8_t)watchdog;
		g->fd = fd;
		g->fd_kind = (uint8_t)fd_kind;
		g->stack = stack;
		thread_name(tid, g->thread, sizeof(g->thread));
	}
	g->count++;
	g->total_ns += dur_ns;
	if (dur_ns > g->max_ns)
		g->max_ns = dur_ns;
}

void as_gate_note(pid_t tid, const struct as_record *r, uint64_t dur_ns)
{
	note(tid, as_call_names[r->call < AS_CALL_COUNT ? r->call : 0], 0, r->fd, r->fd_kind, r->stack, dur_ns);
}

/* A wait the watchdog found counts like a hook's blocking call. */
void as_gate_note_wait(pid_t tid, const char *call, int fd, int fd_kind, uint32_t stack, uint64_t dur_ns)
{
	note(tid, call, 1, fd, fd_kind, stack, dur_ns);
}

/* ---- symbols, at exit ---- */

struct gate_sym {
	void *lib;
	Dwfl *dwfl;
	Dwfl_Module *(*addrmodule)(Dwfl *, Dwarf_Addr);
	const char *(*addrname)(Dwfl_Module *, GElf_Addr);
	const char *(*modinfo)(Dwfl_Module *, void ***, Dwarf_Addr *, Dwarf_Addr *, Dwarf_Addr *,
			       Dwarf_Addr *, const char **, const char **);
	Dwfl_Line *(*getsrc)(Dwfl *, Dwarf_Addr);
	const char *(*lineinfo)(Dwfl_Line *, Dwarf_Addr *, int *, int *, Dwarf_Word *, Dwarf_Word *);
	void (*end)(Dwfl *);
};

static Dwfl_Callbacks dwfl_callbacks;

/* libdw over this very process (its /proc/self/maps), or nothing. */
static void sym_open(struct gate_sym *s)
{
	memset(s, 0, sizeof(*s));
	s->lib = dlopen("libdw.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!s->lib)
		return;
	Dwfl *(*begin)(const Dwfl_Callbacks *) = dlsym(s->lib, "dwfl_begin");
	int (*report)(Dwfl *, pid_t) = dlsym(s->lib, "dwfl_linux_proc_report");
	int (*report_end)(Dwfl *, void *, void *) = dlsym(s->lib, "dwfl_report_end");
	dwfl_callbacks.find_elf = dlsym(s->lib, "dwfl_linux_proc_find_elf");
	dwfl_callbacks.find_debuginfo = dlsym(s->lib, "dwfl_standard_find_debuginfo");
	s->addrmodule = dlsym(s->lib, "dwfl_addrmodule");
	s->addrname = dlsym(s->lib, "dwfl_module_addrname");
	s->modinfo = dlsym(s->lib, "dwfl_module_info");
	s->getsrc = dlsym(s->lib, "dwfl_getsrc");
	s->lineinfo = dlsym(s->lib, "dwfl_lineinfo");
	s->end = dlsym(s->lib, "dwfl_end");
	if (!begin || !report || !report_end || !dwfl_callbacks.find_elf || !dwfl_callbacks.find_debuginfo ||
	    !s->addrmodule || !s->addrname || !s->modinfo || !s->getsrc || !s->lineinfo || !s->end)
		return;
	s->dwfl = begin(&dwfl_callbacks);
	if (s->dwfl && (report(s->dwfl, getpid()) != 0 || report_end(s->dwfl, NULL, NULL) != 0)) {
		s->end(s->dwfl);
		s->dwfl = NULL;
	}
}

/* Frame 0 is an exact address; the others are return addresses, looked up
 * at IP - 1, inside the call instruction. */
static void sym_frame(struct gate_sym *s, uint64_t ip, int exact, struct gate_frame *f)
{
	uint64_t pc = ip && !exact ? ip - 1 : ip;
	memset(f, 0, sizeof(*f));
	Dwfl_Module *m = s->dwfl ? s->addrmodule(s->dwfl, pc) : NULL;
	if (m) {
		f->function = s->addrname(m, pc);
		f->module = s->modinfo(m, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
		Dwfl_Line *l = s->getsrc(s->dwfl, pc);
		if (l)
			f->file = s->lineinfo(l, NULL, &f->line, NULL, NULL, NULL);
		return;
	}
	Dl_info info;
	if (dladdr((void *)(uintptr_t)pc, &info)) {
		f->function = info.dli_sname;
		f->module = info.dli_fname;
	}
}

/* The frames of a finding's stack.  Stacks are captured by the stacks
 * support (stacks=1) and interned by id; without them there are none. */
static size_t stack_frames(struct gate_sym *s, uint32_t stack, struct gate_frame *out, size_t max)
{
	uint64_t ips[GATE_FRAMES];
	size_t n = as_stack_ips(stack, ips, max < GATE_FRAMES ? max : GATE_FRAMES);
	for (size_t i = 0; i < n; i++)
		sym_frame(s, ips[i], i == 0, &out[i]);
	return n;
}

/* ---- the verdict ---- */

static const char *base_name(const char *path)
{
	const char *slash = path ? strrchr(path, '/') : NULL;
	return slash ? slash + 1 : path;
}

/* "slow_sleep loop.c:40 < handle_tick loop.c:62": the project's own frames */
static void site_label(const struct gate_frame *fr, size_t n, char *buf, size_t len)
{
	size_t used = 0, shown = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n && shown < GATE_LABEL && used < len; i++) {
		if (!fr[i].module || !as_frame_is_own(fr[i].module))
			continue;
		int k;
		if (fr[i].file && fr[i].line > 0)
			k = snprintf(buf + used, len - used, "%s%s %s:%d", shown ? " < " : "",
				     fr[i].function ? fr[i].function : "??", base_name(fr[i].file), fr[i].line);
		else
			k = snprintf(buf + used, len - used, "%s%s (%s)", shown ? " < " : "",
				     fr[i].function ? fr[i].function : "??", base_name(fr[i].module));
		if (k < 0)
			break;
		used += (size_t)k;
		shown++;
	}
}

static int judge(struct gate_sym *s, struct gate_finding *g, char *site, size_t len)
{
	struct gate_frame fr[GATE_FRAMES];
	struct as_sup_frame sf[GATE_FRAMES];
	size_t n = stack_frames(s, g->stack, fr, GATE_FRAMES);
	for (size_t i = 0; i < n; i++) {
		sf[i].function = fr[i].function;
		sf[i].module = fr[i].module;
	}
	struct as_sup_rule *r = as_sup_match(&rules, g->call, sf, n);
	if (r)
		r->hits += g->count;
	site_label(fr, n, site, len);
	return r != NULL;
}

static void report_site(const struct gate_finding *g, const char *site)
{
	char fd[48] = "";
	if (g->fd >= 0)
		snprintf(fd, sizeof(fd), ", fd %d%s%s", (int)g->fd, g->fd_kind ? " " : "",
			 g->fd_kind <= AS_FD_OTHER && g->fd_kind ? as_fd_kind_names[g->fd_kind] : "");
	as_warn("  %s %.1f ms%s, thread %s (tid %d)%s, %llu time%s%s", g->call, (double)g->max_ns / 1e6,
		g->count > 1 ? " max" : "", g->thread[0] ? g->thread : "?", (int)g->tid, fd,
		(unsigned long long)g->count, g->count == 1 ? "" : "s",
		g->watchdog ? " (found waiting in the kernel)" : "");
	as_warn("      at %s", site[0] ? site : "(no stack: stacks=0, or not captured)");
}

/* Called by the destructor once the trace is written. */
void as_gate_at_exit(void)
{
	trace_written = 1;
	if (exit_seen)
		verdict();
}

static void verdict(void)
{
	if (!as_cfg.gate || (exit_status & 0xff) != 0 || (!nfound && !unrecorded))
		return;
	cmm_smp_mb();        /* see everything the collector noted before the final flush */
	as_tls.busy = 1;
	struct gate_sym sym;
	sym_open(&sym);
	uint64_t failing = unrecorded, suppressed = 0;
	static char sites[GATE_SHOWN][512];
	size_t shown = 0;
	for (size_t i = 0; i < nfound; i++) {
		char site[512];
		found[i].suppressed = judge(&sym, &found[i], site, sizeof(site));
		if (found[i].suppressed) {
			suppressed += found[i].count;
			continue;
		}
		failing += found[i].count;
		if (shown < GATE_SHOWN)
			memcpy(sites[shown++], site, sizeof(site));
	}
	if (!failing) {
		as_tls.busy = 0;
		return;
	}
	as_warn("asyncshim gate: %llu blocking call%s on loop threads (>= %u ms) in pid %d; exiting with "
		"status %u", (unsigned long long)failing, failing == 1 ? "" : "s", as_cfg.block_ms, (int)getpid(),
		as_cfg.exitcode);
	shown = 0;
	for (size_t i = 0; i < nfound && shown < GATE_SHOWN; i++)
		if (!found[i].suppressed)
			report_site(&found[i], sites[shown++]);
	if (unrecorded)
		as_warn("  (%llu more not kept: out of memory)", (unsigned long long)unrecorded);
	for (size_t i = 0; i < rules.n; i++)
		as_warn("  suppression %s:%u '%s': %llu suppressed", rules.rules[i].file, rules.rules[i].line,
			rules.rules[i].text, (unsigned long long)rules.rules[i].hits);
	as_warn("asyncshim gate: the trace has the details: asyncshim report %s.%d.msgpack", as_cfg.out,
		(int)getpid());
	fflush(NULL);
	as_sys_exit((int)as_cfg.exitcode);
}
