/* fuzz_trace.c — libFuzzer target for the trace reader: every input is fed
 * to trace_load() (the model every command builds), to trace_load_keep()
 * keeping only the 2 longest findings (the report's), and to trace_stream()
 * with the dump visitor (msgpack -> JSON).  Inputs go through a memfd so
 * the reader's real file path is exercised. */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../tools/json.h"
#include "../../tools/trace.h"

static int memfd = -1;
static char path[64];
static FILE *sink;

static int dump_visit(const msgpack_object *o, uint64_t index, void *ctx, char *err, size_t errlen)
{
	(void)index, (void)ctx, (void)err, (void)errlen;
	json_object(sink, o);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (memfd < 0) {
		memfd = memfd_create("fuzz-trace", 0);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
		sink = fopen("/dev/null", "w");
	}
	if (ftruncate(memfd, 0) != 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
		return 0;
	char err[256];
	struct trace tr;
	trace_load(path, &tr, err, sizeof(err));
	trace_free(&tr);
	trace_load_keep(path, &tr, 2, err, sizeof(err));     /* the report's bounded model: evictions */
	trace_free(&tr);
	trace_stream(path, dump_visit, NULL, err, sizeof(err));
	return 0;
}
