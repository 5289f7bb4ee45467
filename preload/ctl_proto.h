/* ctl_proto.h — what asyncshim ctl (tools/ctl.c) sends and the shim
 * (preload/ctl.c) accepts: a queued realtime signal whose value is
 * AS_CTL_MAGIC | command.  The signal is ctl_signal (default SIGRTMAX - 3);
 * ctl reads a ctl_signal= from the process's ASYNCSHIM_OPTIONS. */
#ifndef ASYNCSHIM_CTL_PROTO_H
#define ASYNCSHIM_CTL_PROTO_H

#define AS_CTL_MAGIC 0x41530000
#define AS_CTL_DEFAULT_SIGNAL_FROM_MAX 3   /* SIGRTMAX - 3 */

enum as_ctl_cmd {
	AS_CTL_ENABLE = 1,
	AS_CTL_DISABLE,
	AS_CTL_CLEAR,
	AS_CTL_DUMP,
	AS_CTL_FLIGHT_SIGNAL,    /* flight_signal arrived (not sent by ctl) */
	AS_CTL_COUNT
};

static const char *const as_ctl_names[AS_CTL_COUNT] = {
	0, "enable", "disable", "clear", "dump", "signal",
};

#endif
