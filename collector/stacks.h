/* stacks.h — the collector's side of stacks and stalls (collector/stacks.c)
 * and of the module map (collector/modules.c).  All of it runs on the
 * collector thread under its lock, except as_modules_sync (hooks/dl.c). */
#ifndef ASYNCSHIM_STACKS_H
#define ASYNCSHIM_STACKS_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "../preload/runtime.h"

/* A new trace file begins (start, fork child): every stack and module is
 * written again, as the file is read on its own.  Writes the module map. */
void as_stacks_new_file(msgpack_packer *pk);

/* Before each drain: write modules loaded since the last one. */
void as_modules_pack_new(msgpack_packer *pk);
void as_modules_new_file(msgpack_packer *pk);

/* The interned id of the stack held by the FRAMES records after ring slot
 * I (a BLOCK or SAMPLE record), 0 when it has none.  The stack record is
 * written to the trace the first time an id is used in this file. */
uint32_t as_stack_of(msgpack_packer *pk, struct as_thread *t, uint64_t i);

/* as_stack_ips (the gate's): preload/runtime.h */

/* Stall bookkeeping, in ring order: blocking calls and samples come before
 * the ITER record of the iteration they happened in. */
void as_stall_block(struct as_thread *t, uint64_t dur_ns);
void as_stall_sample(struct as_thread *t, const struct as_record *r, uint64_t i);
void as_stall_iter(msgpack_packer *pk, struct as_thread *t, const struct as_record *r);
void as_stall_reset(struct as_thread *t);

/* The interned id of a stack given as addresses (written when first used). */
uint32_t as_stack_intern(msgpack_packer *pk, const uint64_t *pcs, uint32_t n);

/* The watchdog's findings (collector/offcpu.c, preload/offcpu.h). */
uint64_t as_offcpu_limit(struct as_thread *t, uint64_t tail, uint64_t head, int final);
void as_offcpu_take(msgpack_packer *pk, struct as_thread *t, const struct as_record *iter, uint64_t upto);
void as_offcpu_pack_cause(msgpack_packer *pk, struct as_thread *t, uint64_t start, uint32_t sampled);

#endif
