/* trace_format.h — the trace's record types and keys, declared once.
 *
 * The collector (writer) and the tools (reader) both name every record type
 * and key through these lists, so a key renamed here is renamed on both
 * sides, and a name missing here does not compile (AS_TYPE(x), AS_KEY(x)
 * refer to enum constants).  docs/trace-format.md describes each record;
 * tests/test_format.py checks that the document and these lists agree and
 * that no collector/ or tools/ file spells a type or key as a literal.
 *
 * Every name is a C identifier and is written in the trace as spelled. */
#ifndef ASYNCSHIM_TRACE_FORMAT_H
#define ASYNCSHIM_TRACE_FORMAT_H

#include <stddef.h>

/* Record types, the value of every record's "type" key. */
#define AS_TRACE_TYPES(X) \
	X(header) X(thread) X(iters) X(block) X(module) X(stack) X(stall) \
	X(task) X(task_runs) X(task_end) X(callback) X(func) \
	X(span) X(span_end) X(span_meta) X(span_cumulative) \
	X(overhead) X(ctl) X(flight) X(end)

/* Every key of every record, once each. */
#define AS_TRACE_KEYS(X) \
	X(type) X(format) X(pid) X(ppid) X(exe) X(argv) X(start_unix_ns) X(clock) \
	X(options_string) X(rings) X(options) \
	X(out) X(block_ms) X(stall_ms) X(stacks) X(stack_depth) X(buffer_kb) X(flush_ms) \
	X(mode) X(flight_mb) X(trigger_ms) \
	X(tid) X(name) X(loop) X(dropped) X(exited) X(t0) X(d) \
	X(call) X(fd) X(fd_kind) X(t) X(dur) X(stack) X(span) X(request) X(seen_by) X(nested) \
	X(path) X(base) X(start) X(end) X(build_id) X(image) X(id) X(frames) \
	X(iteration) X(blocked) X(sampled) X(samples) X(sampling_ns) X(cause) \
	X(cpu_ns) X(runq_ns) X(window_ns) \
	X(parent) X(kind) X(fn) X(status) X(source) X(addr) X(module) X(offset) \
	X(key) X(value) X(count) X(total) X(min) X(max) \
	X(calls) X(records) X(stacks_ns) X(call_ns) X(record_ns) X(cumulative_runs) \
	X(cumulative_ns) X(cumulative_total_ns) X(binding_ns) X(other_records) \
	X(collector_cpu_ns) X(loop_ns) X(loop_busy_ns) \
	X(cmd) X(trigger) X(kept_bytes) X(dropped_bytes) X(dictionary_bytes) \
	X(reason) X(exit_status) X(threads_seen) X(duration_ns) X(private_rings) \
	X(removed_stale_rings) X(lost_bytes) X(lost_records) X(ringless_threads) X(ringless_events)

/* The keys each record type may carry, F(type, key): what the collector
 * writes and docs/trace-format.md lists in the type's table.  "type" is in
 * every record and listed with the header only. */
#define AS_TRACE_FIELDS(F) \
	F(header, type) F(header, format) F(header, pid) F(header, ppid) F(header, exe) \
	F(header, argv) F(header, start_unix_ns) F(header, clock) F(header, options_string) \
	F(header, rings) F(header, options) \
	F(thread, tid) F(thread, name) F(thread, loop) F(thread, dropped) F(thread, exited) \
	F(iters, tid) F(iters, t0) F(iters, d) \
	F(block, tid) F(block, call) F(block, fd) F(block, fd_kind) F(block, t) F(block, dur) \
	F(block, stack) F(block, span) F(block, request) F(block, seen_by) F(block, nested) \
	F(module, path) F(module, base) F(module, start) F(module, end) F(module, build_id) \
	F(module, t) F(module, image) \
	F(stack, id) F(stack, frames) \
	F(stall, tid) F(stall, t) F(stall, dur) F(stall, iteration) F(stall, blocked) \
	F(stall, sampled) F(stall, samples) F(stall, sampling_ns) F(stall, span) F(stall, request) \
	F(stall, cause) F(stall, cpu_ns) F(stall, runq_ns) F(stall, window_ns) \
	F(task, tid) F(task, id) F(task, parent) F(task, kind) F(task, fn) F(task, t) \
	F(task_runs, tid) F(task_runs, t0) F(task_runs, d) \
	F(task_end, tid) F(task_end, id) F(task_end, t) F(task_end, status) \
	F(callback, tid) F(callback, fn) F(callback, source) F(callback, t) F(callback, dur) \
	F(func, addr) F(func, name) F(func, module) F(func, offset) \
	F(span, tid) F(span, id) F(span, parent) F(span, kind) F(span, name) F(span, t) \
	F(span_end, tid) F(span_end, id) F(span_end, t) \
	F(span_meta, tid) F(span_meta, id) F(span_meta, key) F(span_meta, value) \
	F(span_cumulative, tid) F(span_cumulative, parent) F(span_cumulative, name) \
	F(span_cumulative, t) F(span_cumulative, count) F(span_cumulative, total) \
	F(span_cumulative, min) F(span_cumulative, max) \
	F(overhead, t) F(overhead, calls) F(overhead, records) F(overhead, stacks) \
	F(overhead, stacks_ns) F(overhead, call_ns) F(overhead, record_ns) F(overhead, sampling_ns) \
	F(overhead, cumulative_runs) F(overhead, cumulative_ns) F(overhead, cumulative_total_ns) \
	F(overhead, binding_ns) F(overhead, other_records) F(overhead, collector_cpu_ns) \
	F(overhead, loop_ns) F(overhead, loop_busy_ns) \
	F(ctl, cmd) F(ctl, t) \
	F(flight, trigger) F(flight, t) F(flight, flight_mb) F(flight, kept_bytes) \
	F(flight, dropped_bytes) F(flight, dictionary_bytes) \
	F(end, reason) F(end, exit_status) F(end, threads_seen) F(end, duration_ns) \
	F(end, private_rings) F(end, removed_stale_rings) F(end, lost_bytes) F(end, lost_records) \
	F(end, ringless_threads) F(end, ringless_events)

/* The defaults of two options: the shim starts with them (preload/init.c),
 * and a trace whose header lacks them is read with them (tools/trace.c). */
#define AS_DEFAULT_BLOCK_MS 10
#define AS_DEFAULT_STALL_MS 10

/* The keys of the header's "options" map. */
#define AS_TRACE_OPTION_KEYS(X) \
	X(out) X(block_ms) X(stall_ms) X(stacks) X(stack_depth) X(buffer_kb) X(flush_ms) \
	X(mode) X(flight_mb) X(trigger_ms)

#define AS_TRACE_ENUM_TYPE(n) AS_T_##n,
#define AS_TRACE_ENUM_KEY(n) AS_K_##n,
enum as_trace_type { AS_TRACE_TYPES(AS_TRACE_ENUM_TYPE) AS_T_COUNT };
enum as_trace_key { AS_TRACE_KEYS(AS_TRACE_ENUM_KEY) AS_K_COUNT };
#undef AS_TRACE_ENUM_TYPE
#undef AS_TRACE_ENUM_KEY

extern const char *const as_trace_type_names[AS_T_COUNT];
extern const char *const as_trace_key_names[AS_K_COUNT];

/* The spelling of a type or key: AS_TYPE(block) is "block". */
#define AS_TYPE(n) (as_trace_type_names[AS_T_##n])
#define AS_KEY(n) (as_trace_key_names[AS_K_##n])

/* The type named by the LEN bytes at S, AS_T_COUNT when none (a newer
 * shim's type: readers skip it). */
enum as_trace_type as_trace_type_of(const char *s, size_t len);
/* The key named by the LEN bytes at S, AS_K_COUNT when none. */
enum as_trace_key as_trace_key_of(const char *s, size_t len);

/* Is KEY one the list gives record type TYPE? */
int as_trace_has_field(enum as_trace_type type, enum as_trace_key key);
/* Is KEY one of the header's "options" map? */
int as_trace_is_option(enum as_trace_key key);

#endif
