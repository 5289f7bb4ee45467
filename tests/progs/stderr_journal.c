/* stderr_journal DIR fork|dump: a daemon that puts its journal file
 * (./journal.log) at fd 2, then makes the shim fail to create a trace in
 * DIR (renamed away):
 *   fork  a fork child creates its trace at start (normal mode);
 *   dump  SIGUSR2 asks for a flight-mode dump, then the program reads
 *         stdin to its end before it exits.
 * The shim's "cannot create" must not land in the journal. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	int fd = open("journal.log", O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (fd < 0 || dup2(fd, 2) != 2)
		return 1;
	close(fd);
	char gone[4096];
	snprintf(gone, sizeof(gone), "%s.gone", argv[1]);
	if (rename(argv[1], gone) != 0)
		return 1;
	if (!strcmp(argv[2], "fork")) {
		pid_t child = fork();
		if (child == 0)
			return 0;
		int status;
		waitpid(child, &status, 0);
		return status != 0;
	}
	raise(SIGUSR2);
	char buf[64];
	while (read(0, buf, sizeof(buf)) > 0)
		;
	return 0;
}
