/* progress.c — see progress.h. */
#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REDRAW_NS 100000000ull     /* at most ten redraws a second */

static int quiet;
static int active;
static char label[96];
static uint64_t total;
static uint64_t last_draw_ns;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void progress_quiet(void)
{
	quiet = 1;
}

static void draw(uint64_t done)
{
	unsigned pct = total ? (unsigned)(done * 100 / total) : 100;
	fprintf(stderr, "\r\033[Kasyncshim: reading %s: %u%% (%llu of %llu MiB)", label, pct > 100 ? 100 : pct,
		(unsigned long long)(done >> 20), (unsigned long long)(total >> 20));
	fflush(stderr);
}

void progress_begin(const char *name, uint64_t total_bytes)
{
	active = !quiet && total_bytes >= PROGRESS_MIN_BYTES && isatty(STDERR_FILENO);
	if (!active)
		return;
	/* the tail of a long path is the part that tells traces apart */
	size_t n = strlen(name);
	snprintf(label, sizeof(label), "%s%s", n > 60 ? "..." : "", n > 60 ? name + n - 60 : name);
	total = total_bytes;
	last_draw_ns = now_ns();
	draw(0);
}

void progress_update(uint64_t done_bytes)
{
	if (!active)
		return;
	uint64_t t = now_ns();
	if (t - last_draw_ns < REDRAW_NS)
		return;
	last_draw_ns = t;
	draw(done_bytes);
}

void progress_end(void)
{
	if (!active)
		return;
	fputs("\r\033[K", stderr);
	fflush(stderr);
	active = 0;
}
