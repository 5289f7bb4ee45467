/* main.c — build/asyncshim: run a program under the shim and analyse traces. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} commands[] = {
	{ "run", cmd_run, "run [--block-ms N] [-o PREFIX] -- CMD ARGS...   run CMD under the shim" },
	{ "report", cmd_report, "report [--json] TRACE...                       loops, lag, blocking calls" },
	{ "check", cmd_check, "check [--max-block-ms N] [--max-blocking N] [--max-lag-p99-ms N] [--max-stall-ms N]\n"
	  "          [--suppress FILE]... [--junit FILE] TRACE...  pass/fail for CI (exit 1 on violations)" },
	{ "diff", cmd_diff, "diff [--tolerance PCT] [--json] BASE NEW          lag and blocking regressions (exit 1)" },
	{ "recover", cmd_recover, "recover TRACE...                               finish the trace of a killed process" },
	{ "dump", cmd_dump, "dump TRACE                                     every record as one JSON line" },
	{ "export", cmd_export, "export --format chrome|folded [-o FILE] TRACE...  Perfetto / chrome://tracing JSON" },
	{ "ctl", cmd_ctl, "ctl PID enable|disable|clear|dump                recording on/off, drop, write now (running process)" },
};

int usage_error(const char *cmd, const char *msg)
{
	fprintf(stderr, "asyncshim %s: %s\n", cmd, msg);
	return 2;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: asyncshim COMMAND ...\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  asyncshim %s\n", commands[i].help);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "asyncshim: unknown command '%s' (try asyncshim --help)\n", argv[1]);
	return 2;
}
