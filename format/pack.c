/* pack.c — see pack.h. */
#include "pack.h"

#include <string.h>

void as_pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

void as_pack_str(msgpack_packer *pk, const char *s)
{
	if (s)
		as_pack_strn(pk, s, strlen(s));
	else
		msgpack_pack_nil(pk);
}

void as_pack_key(msgpack_packer *pk, enum as_trace_key key)
{
	as_pack_str(pk, as_trace_key_names[key]);
}

void as_pack_type(msgpack_packer *pk, enum as_trace_type type)
{
	as_pack_key(pk, AS_K_type);
	as_pack_str(pk, as_trace_type_names[type]);
}
