/* spans.c — writes span, request, metadata and cumulative-span records, and
 * the span/request a blocking call or stall was in.
 *
 * Runs on the collector thread, called from drain_thread() in ring order,
 * so a thread's span records and its blocking calls keep their order in the
 * trace.  Encodings: docs/trace-format.md; in-memory layout: preload/span.h. */
#include "../preload/span.h"
#include "../format/pack.h"

#include <msgpack.h>
#include <string.h>

static void put_id(msgpack_packer *pk, enum as_trace_key k, uint64_t id)
{
	as_pack_key(pk, k);
	if (id)
		msgpack_pack_uint64(pk, id);
	else
		msgpack_pack_nil(pk);
}

/* The K TEXT records from slot I on, into BUF (at most LEN bytes).
 * Returns the bytes read, or -1 when they are not what the shim writes. */
static long text_at(struct as_thread *t, uint64_t i, unsigned k, char *buf, size_t len)
{
	size_t n = 0;
	for (unsigned j = 0; j < k; j++) {
		const struct as_record *x = &t->ring[(i + j) & (t->cap - 1)];
		if (x->kind != AS_REC_TEXT || x->call > AS_TEXT_BYTES || n + x->call > len)
			return -1;
		unsigned char b[AS_TEXT_BYTES];
		memcpy(b, &x->ts, 8);
		memcpy(b + 8, &x->dur, 8);
		memcpy(b + 16, &x->stack, 4);
		memcpy(b + 20, &x->aux, 4);
		memcpy(buf + n, b, x->call);
		n += x->call;
	}
	return (long)n;
}

static void head(msgpack_packer *pk, size_t n, enum as_trace_type type, struct as_thread *t)
{
	msgpack_pack_map(pk, n);
	as_pack_type(pk, type);
	as_pack_key(pk, AS_K_tid);
	msgpack_pack_int64(pk, t->tid);
}

static void pack_begin(msgpack_packer *pk, struct as_thread *t, const struct as_record *r, uint64_t i)
{
	char name[AS_SPAN_NAME_MAX + 1];
	long n = text_at(t, i + 1, r->fd_kind, name, AS_SPAN_NAME_MAX);
	if (n < 0 || n != r->fd)
		return;
	head(pk, 7, AS_T_span, t);
	as_pack_key(pk, AS_K_id);
	msgpack_pack_uint64(pk, r->dur);
	put_id(pk, AS_K_parent, as_span_rec_parent(r));
	as_pack_key(pk, AS_K_kind);
	as_pack_str(pk, r->call == AS_SPAN_REQUEST ? "request" : "span");
	as_pack_key(pk, AS_K_name);
	as_pack_strn(pk, name, (size_t)n);
	as_pack_key(pk, AS_K_t);
	msgpack_pack_uint64(pk, as_ticks_to_ns(r->ts));
}

static void pack_end(msgpack_packer *pk, struct as_thread *t, const struct as_record *r)
{
	head(pk, 4, AS_T_span_end, t);
	as_pack_key(pk, AS_K_id);
	msgpack_pack_uint64(pk, r->dur);
	as_pack_key(pk, AS_K_t);
	msgpack_pack_uint64(pk, as_ticks_to_ns(r->ts));
}

static void pack_meta(msgpack_packer *pk, struct as_thread *t, const struct as_record *r, uint64_t i)
{
	char text[AS_SPAN_KEY_MAX + AS_SPAN_VALUE_MAX];
	long n = text_at(t, i + 1, r->fd_kind, text, sizeof(text));
	size_t klen = (size_t)r->fd, vlen = r->aux;
	if (n < 0 || r->fd <= 0 || klen > AS_SPAN_KEY_MAX || vlen > AS_SPAN_VALUE_MAX || (size_t)n != klen + vlen)
		return;
	head(pk, 5, AS_T_span_meta, t);
	as_pack_key(pk, AS_K_id);
	msgpack_pack_uint64(pk, r->dur);
	as_pack_key(pk, AS_K_key);
	as_pack_strn(pk, text, klen);
	as_pack_key(pk, AS_K_value);
	if (r->call)
		as_pack_strn(pk, text + klen, vlen);
	else
		msgpack_pack_int64(pk, (int64_t)r->ts);
}

static void pack_cumulative(msgpack_packer *pk, struct as_thread *t, const struct as_record *r, uint64_t i)
{
	char name[AS_SPAN_NAME_MAX + 1];
	const struct as_record *mm = &t->ring[(i + 1) & (t->cap - 1)];
	long n = text_at(t, i + 2, r->fd_kind, name, AS_SPAN_NAME_MAX);
	if (mm->kind != AS_REC_SPAN_MINMAX || n < 0 || n != r->fd || !r->dur)
		return;
	head(pk, 9, AS_T_span_cumulative, t);
	put_id(pk, AS_K_parent, as_span_rec_parent(r));
	as_pack_key(pk, AS_K_name);
	as_pack_strn(pk, name, (size_t)n);
	as_pack_key(pk, AS_K_t);
	msgpack_pack_uint64(pk, as_ticks_to_ns(as_span_rec_parent(mm)));
	as_pack_key(pk, AS_K_count);
	msgpack_pack_uint64(pk, r->dur);
	as_pack_key(pk, AS_K_total);
	msgpack_pack_uint64(pk, as_dur_to_ns(r->ts));
	as_pack_key(pk, AS_K_min);
	msgpack_pack_uint64(pk, as_dur_to_ns(mm->ts));
	as_pack_key(pk, AS_K_max);
	msgpack_pack_uint64(pk, as_dur_to_ns(mm->dur));
}

void as_spans_pack(struct msgpack_packer *pk, struct as_thread *t, uint64_t i)
{
	const struct as_record *r = &t->ring[i & (t->cap - 1)];
	switch (r->kind) {
	case AS_REC_SPAN_AT:
		t->c_at_span = r->dur;
		t->c_at_request = r->ts;
		break;
	case AS_REC_SPAN_BEGIN:
		pack_begin(pk, t, r, i);
		break;
	case AS_REC_SPAN_END:
		pack_end(pk, t, r);
		break;
	case AS_REC_SPAN_META:
		pack_meta(pk, t, r, i);
		break;
	case AS_REC_SPAN_CUMUL:
		pack_cumulative(pk, t, r, i);
		break;
	default:
		break;
	}
}

void as_spans_pack_block_attr(struct msgpack_packer *pk, struct as_thread *t)
{
	put_id(pk, AS_K_span, t->c_at_span);
	put_id(pk, AS_K_request, t->c_at_request);
	t->c_at_span = t->c_at_request = 0;
}

/* A stall takes the span of its first sample. */
void as_spans_sample(struct as_thread *t, const struct as_record *r)
{
	if (r->dur != t->c_stall_iter) {
		t->c_stall_iter = r->dur;
		t->c_stall_span = t->c_at_span;
		t->c_stall_request = t->c_at_request;
	}
	t->c_at_span = t->c_at_request = 0;
}

void as_spans_pack_stall_attr(struct msgpack_packer *pk, struct as_thread *t, uint64_t iter_start)
{
	int mine = t->c_stall_iter == iter_start;
	put_id(pk, AS_K_span, mine ? t->c_stall_span : 0);
	put_id(pk, AS_K_request, mine ? t->c_stall_request : 0);
}
