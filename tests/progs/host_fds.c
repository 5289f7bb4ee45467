/* host_fds: what the program sees of its fd table.  Prints
 *   fdsize N          the table's size (/proc/self/status FDSize)
 *   select R ERRNO    select(1001) on fd 1000, which is not open
 *   shim N            fds whose target names an asyncshim file
 *   max N             the highest open fd */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

static int fdsize(void)
{
	char line[256];
	int n = -1;
	FILE *f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "FDSize:", 7))
			n = atoi(line + 7);
	if (f)
		fclose(f);
	return n;
}

int main(void)
{
	printf("fdsize %d\n", fdsize());
	fd_set set;
	FD_ZERO(&set);
	FD_SET(1000, &set);
	struct timeval tv = { 0, 0 };
	errno = 0;
	int r = select(1001, &set, NULL, NULL, &tv);
	printf("select %d %d\n", r, r < 0 ? errno : 0);
	DIR *d = opendir("/proc/self/fd");
	int shim = 0, max = -1;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char path[64], target[4096];
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd == dirfd(d))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = '\0';
		shim += strstr(target, "asyncshim") != NULL;
		max = fd > max ? fd : max;
	}
	if (d)
		closedir(d);
	printf("shim %d\nmax %d\n", shim, max);
	return 0;
}
