/* bigtrace.c — grow a trace made by tests/gen_trace.py to SIZE_MB: the
 * header and thread records once, then the iterations and blocking calls
 * again and again, each copy shifted later in time by the span of the one
 * before, then one end record.  The result is what a long run of the same
 * program would leave: valid, time-ordered per thread, as large as asked.
 *
 *   bigtrace BASE.msgpack OUT.msgpack SIZE_MB */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int key_is(const msgpack_object_kv *kv, const char *s)
{
	size_t n = strlen(s);
	return kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == n &&
	       !memcmp(kv->key.via.str.ptr, s, n);
}

static const char *type_of(const msgpack_object *o, uint32_t *len)
{
	if (o->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < o->via.map.size; i++)
		if (key_is(&o->via.map.ptr[i], "type") && o->via.map.ptr[i].val.type == MSGPACK_OBJECT_STR) {
			*len = o->via.map.ptr[i].val.via.str.size;
			return o->via.map.ptr[i].val.via.str.ptr;
		}
	return NULL;
}

/* o with t0 / t / duration_ns moved later by shift */
static void pack_shifted(msgpack_packer *pk, const msgpack_object *o, uint64_t shift)
{
	msgpack_pack_map(pk, o->via.map.size);
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object_kv *kv = &o->via.map.ptr[i];
		msgpack_pack_object(pk, kv->key);
		if ((key_is(kv, "t0") || key_is(kv, "t") || key_is(kv, "duration_ns")) &&
		    kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
			msgpack_pack_uint64(pk, kv->val.via.u64 + shift);
		else
			msgpack_pack_object(pk, kv->val);
	}
}

static uint64_t end_duration(const msgpack_object *o)
{
	for (uint32_t i = 0; i < o->via.map.size; i++)
		if (key_is(&o->via.map.ptr[i], "duration_ns"))
			return o->via.map.ptr[i].val.via.u64;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: bigtrace BASE OUT SIZE_MB\n");
		return 2;
	}
	FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
	if (!in || !out) {
		perror("bigtrace");
		return 2;
	}
	fseek(in, 0, SEEK_END);
	long size = ftell(in);
	rewind(in);
	char *base = malloc((size_t)size);
	if (!base || fread(base, 1, (size_t)size, in) != (size_t)size) {
		fprintf(stderr, "bigtrace: cannot read %s\n", argv[1]);
		return 2;
	}
	uint64_t want = (uint64_t)atol(argv[3]) << 20, span = 0, written = 0, copies = 0;
	size_t end_at = 0;
	int have_end = 0;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_unpacked u;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_unpacked_init(&u);
	while (written < want) {
		size_t off = 0, at = 0;
		while (msgpack_unpack_next(&u, base, (size_t)size, &off) == MSGPACK_UNPACK_SUCCESS) {
			uint32_t len = 0;
			const char *t = type_of(&u.data, &len);
			size_t here = at;
			at = off;
			if (!t)
				continue;
			if (len == 3 && !memcmp(t, "end", 3)) {
				span = end_duration(&u.data);
				end_at = here;
				have_end = 1;
				continue;
			}
			if (copies > 0 && len == 6 && (!memcmp(t, "header", 6) || !memcmp(t, "thread", 6)))
				continue;
			pack_shifted(&pk, &u.data, span * copies);
			if (sb.size >= (1u << 20)) {
				fwrite(sb.data, 1, sb.size, out);
				written += sb.size;
				msgpack_sbuffer_clear(&sb);
			}
		}
		if (!have_end || span == 0) {
			fprintf(stderr, "bigtrace: %s has no end record\n", argv[1]);
			return 2;
		}
		copies++;
	}
	size_t off = end_at;
	msgpack_unpack_next(&u, base, (size_t)size, &off);
	pack_shifted(&pk, &u.data, span * (copies - 1));
	fwrite(sb.data, 1, sb.size, out);
	msgpack_sbuffer_destroy(&sb);
	msgpack_unpacked_destroy(&u);
	fclose(out);
	free(base);
	printf("%s: %llu copies of %s\n", argv[2], (unsigned long long)copies, argv[1]);
	return 0;
}
