/* dump.c — `asyncshim dump TRACE`: every record as one JSON object per line. */
#include "cli.h"
#include "json.h"
#include "progress.h"
#include "trace.h"

#include <unistd.h>

static int dump_visit(const msgpack_object *o, uint64_t index, void *ctx, char *err, size_t errlen)
{
	(void)index, (void)ctx, (void)err, (void)errlen;
	json_object(stdout, o);
	fputc('\n', stdout);
	return 0;
}

int cmd_dump(int argc, char **argv)
{
	if (argc != 2 || argv[1][0] == '-')
		return usage_error("dump", "usage: asyncshim dump TRACE");
	char err[256];
	/* records go out while the trace is read: a progress line would tear them */
	if (isatty(STDOUT_FILENO))
		progress_quiet();
	if (trace_stream(argv[1], dump_visit, NULL, err, sizeof(err)) != 0) {
		fflush(stdout);
		fprintf(stderr, "asyncshim dump: %s: %s\n", argv[1], err);
		return 2;
	}
	return 0;
}
