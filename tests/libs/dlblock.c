/* dlblock.c — a library that a loop dlopen()s, whose function blocks
 * (tests/progs/dl_loop.c): the blocking call's stack must be symbolized
 * into this library although it was loaded late and unloaded right after. */
#include <unistd.h>

__attribute__((noinline)) int dlblock_nap(void)
{
	int r = usleep(40 * 1000);   /* the blocking call */
	return r;
}
