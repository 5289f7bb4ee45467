/* outfile.h — output files of the tools (export -o, report --html, check
 * --junit): written beside their path and renamed into place only when
 * every write succeeded, so a failure leaves what was there before. */
#ifndef ASYNCSHIM_OUTFILE_H
#define ASYNCSHIM_OUTFILE_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>

struct outfile {
	FILE *f;
	char path[PATH_MAX];     /* where it goes (symlinks resolved) */
	char tmp[PATH_MAX + 16]; /* "" when written in place (a device, a fifo) */
};

/* Opens O->f; on failure says why in ERR and returns -1. */
int outfile_open(struct outfile *o, const char *path, char *err, size_t errlen);
/* Closes O->f; with OK, puts the file in place.  Returns -1 (ERR says
 * why) when any write failed; then nothing the call did not create is
 * removed or replaced. */
int outfile_close(struct outfile *o, int ok, char *err, size_t errlen);

#endif
