/* threads_seen.c — how many threads the process had, loop or not.
 *
 * Only threads that ran a loop or recorded something get a ring and a
 * thread record, so the trace alone would say "1 of 1 threads seen" for a
 * program with a loop and two workers.  The collector lists /proc/self/task
 * at each drain and at the end, and keeps every tid it saw (a thread that
 * lived between two drains is missed).  Collector thread only, under the
 * collector lock. */
#include "../preload/runtime.h"

#include <dirent.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>

static void *seen;              /* tsearch tree of tids, as intptr_t keys */
static uint64_t nseen;

static int cmp_tid(const void *a, const void *b)
{
	intptr_t x = (intptr_t)a, y = (intptr_t)b;
	return (x > y) - (x < y);
}

void as_threads_seen_scan(void)
{
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		long tid = strtol(e->d_name, NULL, 10);
		if (tid > 0 && !tfind((void *)(intptr_t)tid, &seen, cmp_tid) &&
		    tsearch((void *)(intptr_t)tid, &seen, cmp_tid))
			nseen++;
	}
	closedir(d);
}

/* The program's threads: every tid seen but the shim's own (the
 * collector's and the watchdog's, which may have been listed before they
 * said who they are). */
uint64_t as_threads_seen(pid_t collector_tid)
{
	uint64_t n = nseen;
	pid_t own[2] = { collector_tid, CMM_LOAD_SHARED(as_wd_tid) };
	for (int i = 0; i < 2; i++)
		if (own[i] > 0 && own[i] != (i ? own[0] : 0) && tfind((void *)(intptr_t)own[i], &seen, cmp_tid))
			n--;
	return n;
}

static void no_free(void *p)
{
	(void)p;
}

/* A fork child has one thread: the parent's are not its own. */
void as_threads_seen_reset(void)
{
	tdestroy(seen, no_free);
	seen = NULL;
	nseen = 0;
}
