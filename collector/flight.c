/* flight.c — flight-recorder mode's memory: the last flight_mb MiB of
 * packed events, plus what they refer to.
 *
 * In mode=flight the collector drains and packs exactly as usual, but hands
 * the bytes here instead of writing them.  They are split record by record:
 * interned records (stack, func, module: each written once per file, then
 * referred to by id or address) go to the dictionary, which is kept whole —
 * it is bounded by what can be interned, not by time; every other record
 * goes to the event window, a queue of pieces of PIECE bytes of whole
 * records, whose oldest pieces are freed while the window holds more than
 * flight_mb MiB.  So the window never exceeds flight_mb by more than one
 * piece, and a trace written from it is an ordinary trace file whose
 * first events are simply later than the process start. */
#include "../preload/ctl.h"
#include "../format/pack.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PIECE (64 * 1024)

struct piece {
	struct piece *next;
	size_t len, cap;
	char data[];
};

static struct piece *first, *last;
static size_t kept, evicted;
static int marked;               /* a trigger was seen: the lead-up is before it */
static size_t after;             /* bytes taken since the trigger */
static msgpack_sbuffer dict;
static int dict_ok;

static size_t limit(void)
{
	return (size_t)as_cfg.flight_mb << 20;
}

static int is_dictionary(const msgpack_object *o)
{
	if (o->type != MSGPACK_OBJECT_MAP)
		return 0;
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
		if (k->type != MSGPACK_OBJECT_STR || as_trace_key_of(k->via.str.ptr, k->via.str.size) != AS_K_type)
			continue;
		if (v->type != MSGPACK_OBJECT_STR)
			return 0;
		enum as_trace_type ty = as_trace_type_of(v->via.str.ptr, v->via.str.size);
		return ty == AS_T_stack || ty == AS_T_func || ty == AS_T_module;
	}
	return 0;
}

/* Free the oldest pieces until NEED more bytes fit in flight_mb. */
static void evict(size_t need)
{
	while (first && kept + need > limit()) {
		struct piece *p = first;
		first = p->next;
		if (!first)
			last = NULL;
		kept -= p->len;
		evicted += p->len;
		free(p);
	}
}

/* Append one whole record to the window (a record larger than PIECE gets a
 * piece of its own; the collector packs none much larger).  Room is made
 * first, so the window never holds more than flight_mb and the piece being
 * filled.  After a trigger, the events that follow it may fill only half
 * the window: the rest keeps the lead-up, which is what explains it. */
static void add_event(const char *data, size_t len)
{
	if (marked && after + len > limit() / 2 - PIECE) {
		evicted += len;
		return;
	}
	if (!last || last->len + len > last->cap) {
		size_t cap = len > PIECE ? len : PIECE;
		evict(cap);
		struct piece *p = malloc(sizeof(*p) + cap);
		if (!p) {
			evicted += len;
			return;
		}
		p->next = NULL;
		p->len = 0;
		p->cap = cap;
		if (last)
			last->next = p;
		else
			first = p;
		last = p;
	}
	memcpy(last->data + last->len, data, len);
	last->len += len;
	kept += len;
	if (marked)
		after += len;
}

void as_flight_mark_trigger(void)
{
	marked = 1;
	after = 0;
}

void as_flight_take(const char *data, size_t len)
{
	if (!dict_ok) {
		msgpack_sbuffer_init(&dict);
		dict_ok = 1;
	}
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	while (off < len) {
		size_t at = off;
		if (msgpack_unpack_next(&u, data, len, &off) != MSGPACK_UNPACK_SUCCESS)
			break;          /* cannot happen: the collector packed it */
		if (is_dictionary(&u.data))
			msgpack_sbuffer_write(&dict, data + at, off - at);
		else
			add_event(data + at, off - at);
	}
	msgpack_unpacked_destroy(&u);
}

static void free_pieces(int dropped)
{
	while (first) {
		struct piece *p = first;
		first = p->next;
		if (dropped)
			evicted += p->len;
		free(p);
	}
	last = NULL;
	kept = 0;
	marked = 0;
	after = 0;
}

void as_flight_clear(void)
{
	free_pieces(1);
}

/* The window was written: the next trace starts empty, nothing dropped. */
void as_flight_written(void)
{
	free_pieces(0);
	evicted = 0;
}

void as_flight_reset(void)
{
	as_flight_written();
	if (dict_ok)
		msgpack_sbuffer_clear(&dict);
}

static int write_all(int fd, const char *p, size_t n)
{
	return as_sys_write_all(fd, p, n) == n ? 0 : -1;
}

int as_flight_write(int fd)
{
	if (dict_ok && write_all(fd, dict.data, dict.size) != 0)
		return -1;
	for (struct piece *p = first; p; p = p->next)
		if (write_all(fd, p->data, p->len) != 0)
			return -1;
	return 0;
}

size_t as_flight_bytes(void)
{
	return kept + (dict_ok ? dict.size : 0);
}

/* {"type":"flight", ...}: why and when this trace was written, and what
 * the window held. */
void as_flight_pack_info(msgpack_packer *pk, const char *trigger, uint64_t trigger_ns)
{
	msgpack_pack_map(pk, 7);
	as_pack_type(pk, AS_T_flight);
	as_pack_key(pk, AS_K_trigger);
	as_pack_str(pk, trigger);
	as_pack_key(pk, AS_K_t);
	msgpack_pack_uint64(pk, trigger_ns);
	as_pack_key(pk, AS_K_flight_mb);
	msgpack_pack_uint32(pk, as_cfg.flight_mb);
	as_pack_key(pk, AS_K_kept_bytes);
	msgpack_pack_uint64(pk, kept);
	as_pack_key(pk, AS_K_dropped_bytes);
	msgpack_pack_uint64(pk, evicted);
	as_pack_key(pk, AS_K_dictionary_bytes);
	msgpack_pack_uint64(pk, dict_ok ? dict.size : 0);
}
