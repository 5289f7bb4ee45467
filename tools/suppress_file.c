/* suppress_file.c — as_sup_load for the tools: the file through stdio,
 * its text to the parser the gate shares (preload/suppress.c). */
#include "../format/suppress.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int as_sup_load(struct as_sup *s, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(err, errlen, "%s: cannot read suppressions: %s", path, strerror(errno));
		return -1;
	}
	char *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	char chunk[4096];
	size_t n;
	while (mem && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (fwrite(chunk, 1, n, mem) != n)
			break;
	int bad = ferror(f) || !mem || ferror(mem);
	fclose(f);
	if (mem)
		fclose(mem);
	int rc;
	if (bad) {
		snprintf(err, errlen, "%s: read error", path);
		rc = -1;
	} else {
		rc = as_sup_parse(s, path, text, len, err, errlen);
	}
	free(text);
	return rc;
}
