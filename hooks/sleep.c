/* sleep.c — sleep, usleep, nanosleep, clock_nanosleep.
 * On a loop thread any sleep >= block_ms is a blocking call.  A sleep that
 * only a stall-sample signal interrupted goes on sleeping (as_nanosleep and
 * co., preload/watchdog.c): the program never sees that EINTR. */
#include "shim.h"

#include <time.h>
#include <unistd.h>

AS_REAL(unsigned, sleep, (unsigned));
AS_REAL(int, usleep, (useconds_t));
AS_REAL(int, nanosleep, (const struct timespec *, struct timespec *));
AS_REAL(int, clock_nanosleep, (clockid_t, int, const struct timespec *, struct timespec *));

AS_EXPORT unsigned sleep(unsigned s)
{
	AS_RESOLVE(sleep);
	AS_TIMED_CALL(unsigned, AS_CALL_SLEEP, -1, as_sleep(real_sleep, s));
}

AS_EXPORT int usleep(useconds_t us)
{
	AS_RESOLVE(usleep);
	AS_TIMED_CALL(int, AS_CALL_USLEEP, -1, as_usleep(real_usleep, us));
}

AS_EXPORT int nanosleep(const struct timespec *req, struct timespec *rem)
{
	AS_RESOLVE(nanosleep);
	AS_TIMED_CALL(int, AS_CALL_NANOSLEEP, -1, as_nanosleep(real_nanosleep, req, rem));
}

AS_EXPORT int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req, struct timespec *rem)
{
	AS_RESOLVE(clock_nanosleep);
	AS_TIMED_CALL(int, AS_CALL_CLOCK_NANOSLEEP, -1,
		      as_clock_nanosleep(real_clock_nanosleep, clk, flags, req, rem));
}
