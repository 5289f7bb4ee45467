#include "json.h"

#include <inttypes.h>
#include <math.h>

void json_strn(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

void json_str(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	size_t n = 0;
	while (s[n])
		n++;
	json_strn(f, s, n);
}

void json_ms(FILE *f, unsigned long long ns)
{
	fprintf(f, "%llu.%06llu", ns / 1000000ull, ns % 1000000ull);
}

void json_object(FILE *f, const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		fputs("null", f);
		break;
	case MSGPACK_OBJECT_BOOLEAN:
		fputs(o->via.boolean ? "true" : "false", f);
		break;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		fprintf(f, "%" PRIu64, o->via.u64);
		break;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		fprintf(f, "%" PRId64, o->via.i64);
		break;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		if (isfinite(o->via.f64))
			fprintf(f, "%.17g", o->via.f64);
		else
			fputs("null", f);
		break;
	case MSGPACK_OBJECT_STR:
		json_strn(f, o->via.str.ptr, o->via.str.size);
		break;
	case MSGPACK_OBJECT_BIN:
	case MSGPACK_OBJECT_EXT:
		fprintf(f, "{\"binary_bytes\":%u}", o->type == MSGPACK_OBJECT_BIN ? o->via.bin.size : o->via.ext.size);
		break;
	case MSGPACK_OBJECT_ARRAY:
		fputc('[', f);
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			if (i)
				fputc(',', f);
			json_object(f, &o->via.array.ptr[i]);
		}
		fputc(']', f);
		break;
	case MSGPACK_OBJECT_MAP:
		fputc('{', f);
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object_kv *kv = &o->via.map.ptr[i];
			if (i)
				fputc(',', f);
			if (kv->key.type == MSGPACK_OBJECT_STR)
				json_strn(f, kv->key.via.str.ptr, kv->key.via.str.size);
			else {
				/* JSON keys are strings: render the key as JSON text inside one */
				fputs("\"?\"", f);
			}
			fputc(':', f);
			json_object(f, &kv->val);
		}
		fputc('}', f);
		break;
	}
}
