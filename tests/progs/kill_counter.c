/* kill_counter.c FILE — an epoll loop (timeout 0) that makes a 12 ms
 * blocking call every 500 waits and keeps its own count of both in FILE
 * (shared memory), until it is killed.  The test compares the counts with
 * what the recovered trace holds.  Prints "ready" after the first block. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 4096) != 0)
		return 2;
	volatile uint64_t *count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (count == MAP_FAILED)
		return 2;
	struct epoll_event ev;
	int ep = epoll_create1(0);
	for (uint64_t i = 1;; i++) {
		epoll_wait(ep, &ev, 1, 0);
		count[0] = i;                   /* waits returned */
		if (i % 500 == 0) {
			usleep(12 * 1000);
			count[1]++;             /* blocking calls made */
			if (count[1] == 1) {
				printf("ready\n");
				fflush(stdout);
			}
		}
	}
}
