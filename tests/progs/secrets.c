/* secrets.c — an epoll loop that moves secret bytes through a file, a pipe
 * and a socket pair, opens a secret path and looks up a secret host name,
 * each slowly enough (block_ms=1 in the test) to be recorded. */
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
	static const char secret[] = "SECRET-PAYLOAD-7f3a9c";
	struct epoll_event ev;
	int ep = epoll_create1(0);
	epoll_wait(ep, &ev, 1, 0);
	int fd = open("secret-file-7f3a9c", O_WRONLY | O_CREAT, 0600);
	if (write(fd, secret, sizeof(secret)) < 0 || fsync(fd) < 0)
		return 1;
	int p[2], sv[2];
	char buf[64];
	if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 1;
	if (write(p[1], secret, sizeof(secret)) < 0 || read(p[0], buf, sizeof(buf)) < 0)
		return 1;
	if (send(sv[0], secret, sizeof(secret), 0) < 0 || recv(sv[1], buf, sizeof(buf), 0) < 0)
		return 1;
	usleep(2000);
	struct addrinfo *res = NULL;
	if (getaddrinfo("secret-host-7f3a9c.invalid", NULL, NULL, &res) == 0)
		freeaddrinfo(res);
	epoll_wait(ep, &ev, 1, 0);
	return 0;
}
