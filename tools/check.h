/* check.h — the verdict of `asyncshim check`, shared by its text output
 * (check.c) and its JUnit XML output (junit.c). */
#ifndef ASYNCSHIM_CHECK_H
#define ASYNCSHIM_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "sites.h"
#include "trace.h"

enum check_id { CHECK_BLOCK_MS, CHECK_BLOCKING, CHECK_LAG_P99, CHECK_STALL_MS, CHECK_COUNT };

/* A blocking call or a stall of one trace, with its call site. */
struct finding {
	struct trace *tr;
	const char *call;            /* NULL for a stall */
	int64_t tid;
	uint64_t t_ns, dur_ns;
	int fd;                      /* -1 = none */
	const char *fd_kind;         /* "" = none */
	const char *how;             /* "" or how it was seen / what the stall was */
	struct site_stack stack;
	char site[768];              /* site_label(); "" without a stack */
	struct as_sup_rule *suppressed_by;
};

/* Violations of one check with the same call at the same site: shown once,
 * with how many times it happened. */
struct group {
	enum check_id check;
	const struct finding *worst;     /* the longest one */
	uint64_t count, total_ns;
};

/* A loop thread whose p99 lag is over --max-lag-p99-ms. */
struct lag_violation {
	const struct trace *tr;
	const struct thread_info *thread;
	uint64_t p99_ns;
};

struct check_result {
	int enabled[CHECK_COUNT];
	double limit[CHECK_COUNT];       /* ms, or a count for CHECK_BLOCKING */
	uint64_t violations[CHECK_COUNT];
	struct group *groups;            /* every check's groups, in check order */
	size_t ngroups;
	struct lag_violation *lags;
	size_t nlags;
	uint64_t blocking, stalls;       /* findings not suppressed */
	uint64_t suppressed;
	const struct as_sup *sup;
	const struct trace *traces;
	size_t ntraces;
};

const char *check_name(enum check_id id);
/* "2 blocking calls longer than 100 ms" and the like, for a failed check */
void check_summary(const struct check_result *r, enum check_id id, char *buf, size_t len);
/* One violation group as a line: call, duration, thread, count. */
void group_line(const struct group *g, char *buf, size_t len);
const char *thread_name_of(const struct trace *tr, int64_t tid);

int junit_write(const char *path, const struct check_result *r, char *err, size_t errlen);

#endif
