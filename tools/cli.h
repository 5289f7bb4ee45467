/* cli.h — the subcommands of build/asyncshim. Exit codes: 0 ok, 1 findings
 * (check/diff), 2 bad input or usage. */
#ifndef ASYNCSHIM_CLI_H
#define ASYNCSHIM_CLI_H

#include <stddef.h>

int cmd_report(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_ctl(int argc, char **argv);
int cmd_recover(int argc, char **argv);

/* libasyncshim.so beside this program (or ../lib/), 0 when found */
int find_library(char *out, size_t len);

/* asyncshim recover on one trace (tools/recover.c); QUIET: say nothing
 * when there is nothing to recover.  Returns 0 or 2. */
int recover_trace(const char *lib, const char *trace, int quiet);
/* The same for a process that exited with STATUS but never wrote its end
 * record (a raw exit_group): end reason "exit_group". */
int recover_exited(const char *lib, const char *trace, int status);

/* one line on stderr, returns 2 */
int usage_error(const char *cmd, const char *msg);

#endif
