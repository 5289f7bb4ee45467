/* export.c — `asyncshim export --format chrome|folded [-o FILE] TRACE...`
 * One function per format (export.h); this file only picks one and opens
 * the output. */
#include "cli.h"
#include "export.h"
#include "progress.h"
#include "outfile.h"
#include "trace.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXPORT_USAGE "usage: asyncshim export --format chrome|folded [-o FILE] TRACE..."

static const struct {
	const char *name;
	export_fn fn;        /* NULL: known format, not in this build */
} formats[] = {
	{ "chrome", export_chrome },
	{ "folded", export_folded },
};

static int find_format(const char *name, export_fn *fn)
{
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
		if (!strcmp(name, formats[i].name)) {
			*fn = formats[i].fn;
			return 0;
		}
	return -1;
}

int cmd_export(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *format = NULL, *output = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:o:h", longopts, NULL)) != -1) {
		if (c == 'f')
			format = optarg;
		else if (c == 'o')
			output = optarg;
		else
			return usage_error("export", EXPORT_USAGE);
	}
	if (!format || optind >= argc)
		return usage_error("export", EXPORT_USAGE);
	export_fn fn;
	if (find_format(format, &fn) != 0)
		return usage_error("export", "unknown format (use chrome or folded)");
	if (!fn) {
		fprintf(stderr, "asyncshim export: format %s not available in this build\n", format);
		return 2;
	}
	struct outfile of;
	char err[512];
	FILE *out = stdout;
	if (output) {
		if (outfile_open(&of, output, err, sizeof(err)) != 0) {
			fprintf(stderr, "asyncshim export: %s\n", err);
			return 2;
		}
		out = of.f;
	}
	/* events go out while the trace is read: a progress line would tear them */
	if (out == stdout && isatty(STDOUT_FILENO))
		progress_quiet();
	int n = argc - optind, rc = -1;
	struct trace_src *srcs = calloc((size_t)n, sizeof(*srcs));
	if (srcs) {
		for (int i = 0; i < n; i++)
			trace_src_init(&srcs[i], argv[optind + i]);
		rc = fn(out, srcs, n, err, sizeof(err));
		for (int i = 0; i < n; i++)
			trace_src_close(&srcs[i]);
		free(srcs);
	} else {
		snprintf(err, sizeof(err), "out of memory");
	}
	if (!output && (ferror(out) || fflush(out) != 0) && rc == 0) {
		snprintf(err, sizeof(err), "write error on standard output");
		rc = -1;
	}
	/* an error leaves PATH as it was: written aside, never removed */
	char cerr[512];
	if (output && outfile_close(&of, rc == 0, cerr, sizeof(cerr)) != 0 && rc == 0) {
		snprintf(err, sizeof(err), "%s", cerr);
		rc = -1;
	}
	if (rc != 0) {
		fprintf(stderr, "asyncshim export: %s\n", err);
		return 2;
	}
	return 0;
}
