/* asyncshim.h — mark your own spans and requests for the asyncshim profiler.
 *
 *     #include <asyncshim.h>          cc ... $(pkg-config --cflags --libs asyncshim)
 *
 *     void handle(struct req *r)
 *     {
 *             asyncshim_request_begin(r->id);         // "GET /a#17"
 *             {
 *                     ASYNCSHIM_SPAN("parse");        // ends at the closing brace
 *                     parse(r);
 *             }
 *             asyncshim_span_begin("query");
 *             asyncshim_span_set_int("rows", n);
 *             asyncshim_span_set_str("table", "users");
 *             for (...) {
 *                     ASYNCSHIM_SPAN_CUMULATIVE("row");  // one entry: count, total, min, max
 *                     ...
 *             }
 *             asyncshim_span_end();
 *             asyncshim_request_end();
 *     }
 *
 * A program built with this header runs unchanged without the shim: the
 * first call looks the shim up once (dlsym(RTLD_DEFAULT, "asyncshim_api_v1")),
 * and when it is not preloaded every call is a load and a branch.  Do not
 * make the first call from a signal handler (dlsym is not async-signal-safe).
 *
 * Spans nest per thread, and per task for coroutines the shim follows
 * (makecontext/swapcontext, libuv work): a span begun in a task and
 * suspended across a switch stays with that task.  asyncshim_span_end ends
 * the innermost span; asyncshim_request_end ends the innermost request and
 * any span still open inside it.  Names, keys and string values are copied
 * when called (at most 63, 31 and 63 bytes; longer ones are cut); the
 * program's memory is never read later.
 *
 * Cumulative spans are for hot loops: instead of one record per run, the
 * shim adds each run to one entry per (parent span, name) — count, total,
 * min, max — written when the parent ends (outside any span: every second
 * and when the thread ends).
 *
 * asyncshim_span_open/_close take and return span ids instead of following
 * the call stack: for a request handled across several callbacks, and for
 * language bindings (python/asyncshim.py).  kind: ASYNCSHIM_KIND_SPAN or
 * ASYNCSHIM_KIND_REQUEST; parent 0 = none.  They return 0 when nothing is
 * recorded (no shim, or recording disabled). */
#ifndef ASYNCSHIM_H
#define ASYNCSHIM_H

#include <dlfcn.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ASYNCSHIM_API_VERSION 1
#define ASYNCSHIM_KIND_SPAN 0
#define ASYNCSHIM_KIND_REQUEST 1

/* What the shim exports as asyncshim_api_v1.  Fields are only ever added
 * at the end (size tells how many there are). */
struct asyncshim_api {
	unsigned version;
	unsigned size;          /* sizeof(struct asyncshim_api) in the shim */
	void (*span_begin)(const char *name);
	void (*span_end)(void);
	void (*span_set_int)(const char *key, long long value);
	void (*span_set_str)(const char *key, const char *value);
	void (*cumulative_begin)(const char *name);
	void (*cumulative_end)(void);
	void (*request_begin)(const char *id);
	void (*request_end)(void);
	uint64_t (*span_open)(const char *name, uint64_t parent, int kind);
	void (*span_close)(uint64_t span);
	void (*span_meta_int)(uint64_t span, const char *key, long long value);
	void (*span_meta_str)(uint64_t span, const char *key, const char *value);
	void (*attribute)(uint64_t span, uint64_t request);
};

#ifndef ASYNCSHIM_NO_INLINE

/* The shim's table, or NULL when it is not loaded; looked up once per
 * translation unit (a race only repeats the same lookup). */
static inline const struct asyncshim_api *asyncshim__api(void)
{
	static const struct asyncshim_api *api;
	static int looked;
	if (__builtin_expect(__atomic_load_n(&looked, __ATOMIC_ACQUIRE), 1))
		return __atomic_load_n(&api, __ATOMIC_RELAXED);
	/* RTLD_DEFAULT is (void *)0 in glibc */
	const struct asyncshim_api *a = (const struct asyncshim_api *)dlsym((void *)0, "asyncshim_api_v1");
	if (a && (a->version != ASYNCSHIM_API_VERSION || a->size < sizeof(*a)))
		a = 0;
	__atomic_store_n(&api, a, __ATOMIC_RELAXED);
	__atomic_store_n(&looked, 1, __ATOMIC_RELEASE);
	return a;
}

#define ASYNCSHIM__CALL(fn, ...)                                    \
	do {                                                       \
		const struct asyncshim_api *a_ = asyncshim__api(); \
		if (a_)                                            \
			a_->fn(__VA_ARGS__);                       \
	} while (0)

static inline void asyncshim_span_begin(const char *name) { ASYNCSHIM__CALL(span_begin, name); }
static inline void asyncshim_span_end(void)
{
	const struct asyncshim_api *a = asyncshim__api();
	if (a)
		a->span_end();
}
static inline void asyncshim_span_set_int(const char *key, long long value)
{
	ASYNCSHIM__CALL(span_set_int, key, value);
}
static inline void asyncshim_span_set_str(const char *key, const char *value)
{
	ASYNCSHIM__CALL(span_set_str, key, value);
}
static inline void asyncshim_span_cumulative_begin(const char *name) { ASYNCSHIM__CALL(cumulative_begin, name); }
static inline void asyncshim_span_cumulative_end(void)
{
	const struct asyncshim_api *a = asyncshim__api();
	if (a)
		a->cumulative_end();
}
static inline void asyncshim_request_begin(const char *id) { ASYNCSHIM__CALL(request_begin, id); }
static inline void asyncshim_request_end(void)
{
	const struct asyncshim_api *a = asyncshim__api();
	if (a)
		a->request_end();
}
static inline uint64_t asyncshim_span_open(const char *name, uint64_t parent, int kind)
{
	const struct asyncshim_api *a = asyncshim__api();
	return a ? a->span_open(name, parent, kind) : 0;
}
static inline void asyncshim_span_close(uint64_t span) { ASYNCSHIM__CALL(span_close, span); }
static inline void asyncshim_span_meta_int(uint64_t span, const char *key, long long value)
{
	ASYNCSHIM__CALL(span_meta_int, span, key, value);
}
static inline void asyncshim_span_meta_str(uint64_t span, const char *key, const char *value)
{
	ASYNCSHIM__CALL(span_meta_str, span, key, value);
}

/* Scope forms: the span (request) ends when the enclosing block is left. */
static inline void asyncshim__end_scope(int *unused)
{
	(void)unused;
	asyncshim_span_end();
}
static inline void asyncshim__end_cumulative(int *unused)
{
	(void)unused;
	asyncshim_span_cumulative_end();
}
static inline void asyncshim__end_request(int *unused)
{
	(void)unused;
	asyncshim_request_end();
}
#define ASYNCSHIM__CAT2(a, b) a##b
#define ASYNCSHIM__CAT(a, b) ASYNCSHIM__CAT2(a, b)
#define ASYNCSHIM__SCOPE(begin, end, arg)                                                  \
	int ASYNCSHIM__CAT(asyncshim__scope_, __LINE__) __attribute__((cleanup(end), unused)) = \
		(begin(arg), 0)
#define ASYNCSHIM_SPAN(name) ASYNCSHIM__SCOPE(asyncshim_span_begin, asyncshim__end_scope, name)
#define ASYNCSHIM_SPAN_CUMULATIVE(name) \
	ASYNCSHIM__SCOPE(asyncshim_span_cumulative_begin, asyncshim__end_cumulative, name)
#define ASYNCSHIM_REQUEST(id) ASYNCSHIM__SCOPE(asyncshim_request_begin, asyncshim__end_request, id)

#endif /* ASYNCSHIM_NO_INLINE */

#ifdef __cplusplus
}
#endif

#endif
