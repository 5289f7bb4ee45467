/* many_requests.c — 12,000 short requests, each with a span "work"; three
 * of them (11,000 to 11,002), well before the last ones, block in usleep
 * for 15 ms.  A report must keep the slowest and the most recent requests,
 * not the first ones. */
#include <asyncshim.h>

#include <stdio.h>
#include <unistd.h>

int main(void)
{
	volatile unsigned sink = 0;
	for (int n = 0; n < 12000; n++) {
		char id[32];
		snprintf(id, sizeof(id), "req-%d", n);
		asyncshim_request_begin(id);
		asyncshim_span_begin("work");
		if (n >= 11000 && n <= 11002)
			usleep(15000);
		else
			for (int i = 0; i < 200; i++)
				sink += (unsigned)i;
		asyncshim_span_end();
		asyncshim_request_end();
		if (n % 100 == 99)
			usleep(2000);   /* lets the collector drain the ring */
	}
	printf("done %u\n", sink);
	return 0;
}
