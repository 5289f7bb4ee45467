/* suppress.h — suppression rules for blocking calls and stalls.
 *
 * One parser and one matcher, linked into both the tools (`asyncshim check
 * --suppress FILE`) and the preload library (the in-process gate,
 * `suppress=FILE`), so a rule means the same thing in both.  The format is
 * documented in docs/ci.md:
 *
 *     # comment
 *     fun:slow_sleep                 a function glob anywhere in the stack
 *     mod:libfoo.so*                 a module glob anywhere in the stack
 *     call:read fun:wait_for_*       only blocking calls named read
 *
 * The matcher works on symbolized frames, so it does not care who
 * symbolized them (libdwfl in the tools, the gate's own lookup in-process). */
#ifndef ASYNCSHIM_SUPPRESS_H
#define ASYNCSHIM_SUPPRESS_H

#include <stddef.h>
#include <stdint.h>

/* One symbolized frame; either name may be NULL when unknown. */
struct as_sup_frame {
	const char *function;
	const char *module;      /* path or file name of the ELF module */
};

struct as_sup_rule {
	char *fun;               /* function glob, or NULL */
	char *mod;               /* module glob, or NULL */
	char *call;              /* call-name glob, or NULL: any finding */
	char *text;              /* the rule as written, for reports */
	const char *file;        /* owned by the set */
	unsigned line;
	uint64_t hits;           /* findings this rule suppressed (caller counts) */
};

struct as_sup {
	struct as_sup_rule *rules;
	size_t n, cap;
	char **files;
	size_t nfiles;
};

/* Append the rules of PATH to S.  Returns 0, or -1 with one line
 * ("FILE:LINE: why" or "FILE: why") in err; S stays usable either way.
 * as_sup_load reads the file with stdio (the tools: tools/suppress_file.c);
 * as_sup_parse takes its text, which the gate reads with the runtime's
 * own calls (preload/gate.c: the shim calls no function it interposes). */
int as_sup_load(struct as_sup *s, const char *path, char *err, size_t errlen);
int as_sup_parse(struct as_sup *s, const char *path, const char *text, size_t len, char *err, size_t errlen);

/* The first rule matching a finding: CALL is the blocking call's name, or
 * NULL for a stall (rules restricted with call: never match stalls).  A rule
 * matches when one frame satisfies its fun: and mod: globs.  Does not count. */
struct as_sup_rule *as_sup_match(const struct as_sup *s, const char *call,
				 const struct as_sup_frame *frames, size_t nframes);

void as_sup_free(struct as_sup *s);

/* Is a frame in MODULE the project's own code?  Not the shim, not the C
 * library or loader, nor anything in the system library directories.  The
 * first own frames name a finding's call site in check, diff and the gate. */
int as_frame_is_own(const char *module);

#endif
