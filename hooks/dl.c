/* dl.c — dlclose: the module map is brought up to date before a library can
 * go away, so stacks into a library loaded and unloaded between two drains
 * can still be symbolized (collector/modules.c).
 *
 * dlopen is deliberately not interposed: glibc takes dlopen's return address
 * as the caller whose RPATH/RUNPATH, $ORIGIN and link namespace apply, so a
 * hook would change which library a program gets.  New libraries are found
 * by the collector instead (glibc's load counter, checked at every drain). */
#include "shim.h"

#include <dlfcn.h>

AS_REAL(int, dlclose, (void *));

AS_EXPORT int dlclose(void *handle)
{
	AS_RESOLVE(dlclose);
	if (CMM_LOAD_SHARED(as_active) && !as_tls.busy && !as_tls.internal)
		as_modules_sync();
	return real_dlclose(handle);
}
