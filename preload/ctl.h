/* ctl.h — runtime control (asyncshim ctl PID enable|disable|clear|dump),
 * flight-recorder mode and the shim's measurement of its own cost.
 *
 * preload/ctl.c takes the signals and turns them into pending commands;
 * the collector thread carries them out (collector/collector.c), keeps the
 * flight recorder's memory (collector/flight.c) and writes the estimate of
 * what the shim cost (collector/overhead.c). */
#ifndef ASYNCSHIM_CTL_H
#define ASYNCSHIM_CTL_H

#include "runtime.h"

#include <msgpack.h>

#include "ctl_proto.h"

/* ---- preload/ctl.c ---- */
void as_ctl_start(void);                /* constructor: take the signals */
unsigned as_ctl_take_pending(void);     /* collector: bit 1 << cmd per command */
void as_ctl_after_fork_child(void);

/* ---- collector/collector.c ---- */
void as_collector_wake(void);           /* async-signal-safe */

/* ---- collector/flight.c: the last flight_mb MiB of packed events ---- */
/* Move what the collector packed (DATA, LEN) into memory: interned records
 * (stacks, functions, modules) to the dictionary, every other one to the
 * event window, dropping its oldest events beyond flight_mb. */
void as_flight_take(const char *data, size_t len);
void as_flight_mark_trigger(void);      /* what follows gets half the window */
void as_flight_clear(void);             /* events only; the dictionary stays */
void as_flight_written(void);           /* emptied by a trace written */
void as_flight_reset(void);             /* everything (fork child) */
/* Write dictionary then events to FD; 0 or -1. */
int as_flight_write(int fd);
size_t as_flight_bytes(void);           /* what as_flight_write writes */
void as_flight_pack_info(msgpack_packer *pk, const char *trigger, uint64_t trigger_ns);

/* ---- collector/overhead.c ---- */
void as_overhead_start(void);           /* on the collector thread, once */
void as_overhead_count(struct as_thread *t, uint64_t from, uint64_t to, const uint64_t *iters_busy);
void as_overhead_pack(msgpack_packer *pk);
void as_overhead_reset(void);           /* fork child */

#endif
