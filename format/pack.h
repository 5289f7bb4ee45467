/* pack.h — the one msgpack string packer of the trace writer. */
#ifndef ASYNCSHIM_PACK_H
#define ASYNCSHIM_PACK_H

#include <msgpack.h>

#include "trace_format.h"

/* S as a msgpack str (nil when S is NULL). */
void as_pack_str(msgpack_packer *pk, const char *s);
/* The N bytes at S as a msgpack str. */
void as_pack_strn(msgpack_packer *pk, const char *s, size_t n);
/* A key of the list: as_pack_key(pk, AS_K_tid). */
void as_pack_key(msgpack_packer *pk, enum as_trace_key key);
/* The "type" key and its value: the first pair of every record. */
void as_pack_type(msgpack_packer *pk, enum as_trace_type type);

#endif
