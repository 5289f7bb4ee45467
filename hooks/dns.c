/* dns.c — getaddrinfo: a synchronous name lookup on a loop thread is one of
 * the most common ways a loop blocks (resolver timeouts are seconds). */
#include "shim.h"

#include <netdb.h>

AS_REAL(int, getaddrinfo, (const char *, const char *, const struct addrinfo *, struct addrinfo **));

AS_EXPORT int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
			  struct addrinfo **res)
{
	AS_RESOLVE(getaddrinfo);
	AS_TIMED_CALL(int, AS_CALL_GETADDRINFO, -1, real_getaddrinfo(node, service, hints, res));
}
