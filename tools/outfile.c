/* outfile.c — see outfile.h. */
#include "outfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A new file gets the mode fopen() would have given it; an existing one
 * keeps its own. */
static mode_t new_mode(const struct stat *old, int exists)
{
	if (exists)
		return old->st_mode & 07777;
	mode_t mask = umask(0);
	umask(mask);
	return 0666 & ~mask;
}

int outfile_open(struct outfile *o, const char *path, char *err, size_t errlen)
{
	struct stat st;
	int exists = stat(path, &st) == 0;
	memset(o, 0, sizeof(*o));
	/* write beside the file a symlink names, not over the symlink */
	if (!exists || !realpath(path, o->path))
		snprintf(o->path, sizeof(o->path), "%s", path);
	if (exists && !S_ISREG(st.st_mode)) {
		/* a device or fifo (/dev/null, /dev/stdout): written as it is */
		if (!(o->f = fopen(path, "w")))
			goto fail;
		return 0;
	}
	snprintf(o->tmp, sizeof(o->tmp), "%s.XXXXXX", o->path);
	int fd = mkstemp(o->tmp);
	if (fd < 0) {
		o->tmp[0] = '\0';
		goto fail;
	}
	if (fchmod(fd, new_mode(&st, exists)) != 0 || !(o->f = fdopen(fd, "w"))) {
		int saved = errno;
		close(fd);
		unlink(o->tmp);
		errno = saved;
		goto fail;
	}
	return 0;
fail:
	snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
	return -1;
}

int outfile_close(struct outfile *o, int ok, char *err, size_t errlen)
{
	int saved = 0, bad = ferror(o->f) != 0;
	if (fflush(o->f) != 0) {
		saved = errno;
		bad = 1;
	}
	if (fclose(o->f) != 0) {
		saved = saved ? saved : errno;
		bad = 1;
	}
	o->f = NULL;
	if (ok && !bad && o->tmp[0] && rename(o->tmp, o->path) != 0) {
		saved = errno;
		bad = 1;
	}
	if (o->tmp[0] && (!ok || bad))
		unlink(o->tmp);
	if (bad)
		snprintf(err, errlen, "cannot write %s: %s", o->path, saved ? strerror(saved) : "write error");
	return bad ? -1 : 0;
}
