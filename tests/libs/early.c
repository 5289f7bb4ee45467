/* early_lib.c — built as a shared library whose constructor calls hooked
 * functions (epoll_wait, usleep, write, open) before or after the shim's own
 * constructor, depending on the preload order. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

__attribute__((constructor)) static void early(void)
{
	struct epoll_event ev;
	int ep = epoll_create1(0);
	epoll_wait(ep, &ev, 1, 0);
	usleep(1000);
	int fd = open("/dev/null", O_WRONLY);
	if (write(fd, "x", 1) != 1)
		_exit(9);
	close(fd);
	close(ep);
}
