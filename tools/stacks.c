/* stacks.c — the stack model of a trace: "stack" and "module" records
 * (docs/trace-format.md), symbolized on first use; "stall" records are
 * parsed here and kept by findings.c. */
#include "stacks.h"
#include "symbolize.h"

#include <stdlib.h>
#include <string.h>

#define MAX_FRAMES 4096        /* per stack; the shim writes at most 256 */
#define MAX_SAMPLES 65536      /* per stall; the shim keeps at most 64 */

struct trace_stack {
	uint64_t id;
	uint64_t *pcs;
	uint32_t n;
	int symbolized;
	size_t hidden;                  /* leading frames in the shim */
	struct site_frame *frames;
	uint64_t *offsets;
};

struct stack_model {
	struct trace_stack *stacks;
	size_t nstacks, cap_stacks;
	int sorted;
	struct symbolizer *sym;
};

int stacks_is_type(const char *type)
{
	return !strcmp(type, AS_TYPE(stack)) || !strcmp(type, AS_TYPE(module)) || !strcmp(type, AS_TYPE(stall));
}

/* An array of at most MAX positive integers, copied; -1 if anything else. */
static int u64_array(const msgpack_object *a, uint32_t max, uint64_t **out, uint32_t *n)
{
	*out = NULL;
	*n = 0;
	if (!a || a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size > max)
		return -1;
	if (!a->via.array.size)
		return 0;
	uint64_t *v = malloc(a->via.array.size * sizeof(*v));
	if (!v)
		return -1;
	for (uint32_t i = 0; i < a->via.array.size; i++) {
		if (a->via.array.ptr[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
			free(v);
			return -1;
		}
		v[i] = a->via.array.ptr[i].via.u64;
	}
	*out = v;
	*n = a->via.array.size;
	return 0;
}

static int load_stack(struct stack_model *m, const msgpack_object *o)
{
	struct trace_stack s;
	memset(&s, 0, sizeof(s));
	if (mp_u64(o, AS_K_id, &s.id) != 0 || !s.id || u64_array(mp_get(o, AS_K_frames), MAX_FRAMES, &s.pcs, &s.n) != 0)
		return -1;
	struct trace_stack *p = trace_grow(m->stacks, &m->cap_stacks, m->nstacks, sizeof(*p));
	if (!p) {
		free(s.pcs);
		return -1;
	}
	m->stacks = p;
	m->stacks[m->nstacks++] = s;
	m->sorted = 0;
	return 0;
}

static int load_module(struct stack_model *m, const msgpack_object *o)
{
	char path[4096], id[160] = "";
	uint64_t base, start, end;
	if (mp_str(o, AS_K_path, path, sizeof(path)) != 0 || mp_u64(o, AS_K_base, &base) != 0 ||
	    mp_u64(o, AS_K_start, &start) != 0 || mp_u64(o, AS_K_end, &end) != 0 || start > end)
		return -1;
	mp_str(o, AS_K_build_id, id, sizeof(id));
	const msgpack_object *img = mp_get(o, AS_K_image);
	int has_image = img && img->type == MSGPACK_OBJECT_BIN;
	if (!m->sym && !(m->sym = sym_new()))
		return -1;
	sym_add_module(m->sym, path, base, start, end, id, has_image ? img->via.bin.ptr : NULL,
		       has_image ? img->via.bin.size : 0);
	return 0;
}

int stacks_parse_stall(const msgpack_object *o, struct stall *s)
{
	memset(s, 0, sizeof(*s));
	if (mp_i64(o, AS_K_tid, &s->tid) != 0 || mp_u64(o, AS_K_t, &s->t_ns) != 0 || mp_u64(o, AS_K_dur, &s->dur_ns) != 0 ||
	    u64_array(mp_get(o, AS_K_samples), MAX_SAMPLES, &s->samples, &s->nsamples) != 0)
		return -1;
	if (mp_u64(o, AS_K_iteration, &s->iter_ns) != 0 || s->iter_ns < s->dur_ns)
		s->iter_ns = s->dur_ns;
	mp_u64(o, AS_K_blocked, &s->blocked_ns);
	if (mp_u64(o, AS_K_sampled, &s->sampled) != 0 || s->sampled < s->nsamples)
		s->sampled = s->nsamples;
	mp_u64(o, AS_K_span, &s->span);
	mp_u64(o, AS_K_request, &s->request);
	if (mp_str(o, AS_K_cause, s->cause, sizeof(s->cause)) != 0 ||
	    (strcmp(s->cause, "cpu") && strcmp(s->cause, "preempted") && strcmp(s->cause, "off_cpu")))
		s->cause[0] = '\0';
	s->sched = mp_u64(o, AS_K_cpu_ns, &s->cpu_ns) == 0 && mp_u64(o, AS_K_runq_ns, &s->runq_ns) == 0 &&
		   mp_u64(o, AS_K_window_ns, &s->window_ns) == 0;
	/* a preempted thread's samples show where it happened to be: not the cause */
	if (!strcmp(s->cause, "preempted"))
		s->nsamples = 0;
	return 0;
}

const char *stall_cause_words(const struct stall *s)
{
	if (!strcmp(s->cause, "cpu"))
		return "running on a CPU";
	if (!strcmp(s->cause, "preempted"))
		return "runnable, waiting for a CPU another process had (preempted)";
	if (!strcmp(s->cause, "off_cpu"))
		return "waiting off CPU (short waits no blocking call explains)";
	return "not known (the watchdog did not look in time)";
}

int stacks_load(struct stack_model **mp, const char *type, const msgpack_object *o, uint64_t *last_ns)
{
	*last_ns = 0;
	if (!*mp && !(*mp = calloc(1, sizeof(**mp))))
		return -1;
	if (!strcmp(type, AS_TYPE(stack)))
		return load_stack(*mp, o);
	if (!strcmp(type, AS_TYPE(module)))
		return load_module(*mp, o);
	struct stall st;                /* trace.c gives stalls to findings.c */
	int rc = stacks_parse_stall(o, &st);
	free(st.samples);
	return rc;
}

void stacks_free(struct stack_model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nstacks; i++) {
		free(m->stacks[i].pcs);
		free(m->stacks[i].frames);
		free(m->stacks[i].offsets);
	}
	free(m->stacks);
	sym_free(m->sym);
	free(m);
}

/* ---- lookups ---- */

static int by_id(const void *a, const void *b)
{
	const struct trace_stack *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static struct trace_stack *find_stack(struct stack_model *m, uint64_t id)
{
	if (!m || !id || !m->nstacks)
		return NULL;
	if (!m->sorted) {
		qsort(m->stacks, m->nstacks, sizeof(*m->stacks), by_id);   /* ids are unique in a file */
		m->sorted = 1;
	}
	struct trace_stack key = { .id = id };
	return bsearch(&key, m->stacks, m->nstacks, sizeof(*m->stacks), by_id);
}

static int shim_module(const char *module)
{
	const char *slash = module ? strrchr(module, '/') : NULL;
	return module && !strcmp(slash ? slash + 1 : module, "libasyncshim.so");
}

static void symbolize(struct stack_model *m, struct trace_stack *s)
{
	s->symbolized = 1;
	s->frames = calloc(s->n ? s->n : 1, sizeof(*s->frames));
	s->offsets = calloc(s->n ? s->n : 1, sizeof(*s->offsets));
	if (!s->frames || !s->offsets) {
		s->n = 0;
		return;
	}
	/* The shim's frames go wherever they are (its hooks and the
	 * trampolines it puts between a loop and its callbacks): the README
	 * promises the program's stack.  A return address outside every module
	 * past the first frame is no code: the end of a coroutine's stack
	 * (gevent's greenlets), whose unwinding read junk; stop there. */
	uint32_t n = 0, shim = 0;
	int mapped = 0;
	for (uint32_t i = 0; i < s->n; i++) {
		struct sym_frame f;
		sym_lookup(m->sym, s->pcs[i], i == 0, &f);
		int unknown = !strcmp(f.module, "[unknown]");
		if (unknown && mapped)
			break;
		mapped |= !unknown;
		struct site_frame x = { f.function, f.module, f.file, f.line, f.offset };
		if (shim_module(f.module)) {
			shim++;
			continue;
		}
		s->offsets[n] = f.offset;
		s->frames[n++] = x;
	}
	if (!n && shim) {               /* all ours: show them rather than nothing */
		for (uint32_t i = 0; i < shim; i++) {
			struct sym_frame f;
			sym_lookup(m->sym, s->pcs[i], i == 0, &f);
			struct site_frame x = { f.function, f.module, f.file, f.line, f.offset };
			s->offsets[n] = f.offset;
			s->frames[n++] = x;
		}
	}
	s->n = n;
	s->hidden = 0;
}

size_t stack_frames(const struct trace *tr, uint64_t id, const struct site_frame **frames,
		    const uint64_t **offsets, size_t *hidden)
{
	struct trace_stack *s = find_stack(tr->stacks, id);
	if (s && !s->symbolized)
		symbolize(tr->stacks, s);
	if (frames)
		*frames = s ? s->frames : NULL;
	if (offsets)
		*offsets = s ? s->offsets : NULL;
	if (hidden)
		*hidden = s ? s->hidden : 0;
	return s ? s->n : 0;
}

/* The function whose code starts at ADDR (a task's entry function,
 * a callback), from the module map; NULL when nothing names it.  The string
 * lives as long as the trace. */
const char *stacks_function_at(const struct trace *tr, uint64_t addr)
{
	struct stack_model *m = tr->stacks;
	struct sym_frame f;
	if (!m || !m->sym)
		return NULL;
	sym_lookup(m->sym, addr, 1, &f);
	return f.function;
}
