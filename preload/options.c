/* options.c — ASYNCSHIM_OPTIONS="key=value:key=value", sanitizer style.
 *
 * Parsing never allocates and never touches errno of the host in a way it can
 * see: it runs in the constructor.  Any unknown key or bad value is an error
 * that disables the shim (the caller prints the one line). */
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct as_option {
	const char *key;
	unsigned *val;
	unsigned min, max;
};

static int parse_uint(const char *s, size_t len, unsigned *out)
{
	unsigned long v = 0;
	if (len == 0 || len > 9)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	*out = (unsigned)v;
	return 0;
}

static int set_out(struct as_config *cfg, const char *v, size_t len)
{
	if (len == 0 || len >= sizeof(cfg->out))
		return -1;
	memcpy(cfg->out, v, len);
	cfg->out[len] = '\0';
	return 0;
}

static int set_suppress(struct as_config *cfg, const char *v, size_t len)
{
	if (len == 0 || len >= sizeof(cfg->suppress))
		return -1;
	memcpy(cfg->suppress, v, len);
	cfg->suppress[len] = '\0';
	return 0;
}

/* mode=normal (write as it goes) or mode=flight (keep the last flight_mb
 * MiB in memory, write only when triggered: preload/ctl.h) */
static int set_mode(struct as_config *cfg, const char *v, size_t len)
{
	if (len == 6 && !memcmp(v, "normal", 6))
		cfg->flight = 0;
	else if (len == 6 && !memcmp(v, "flight", 6))
		cfg->flight = 1;
	else
		return -1;
	return 0;
}

int as_parse_options(const char *s, struct as_config *cfg, char *err, size_t errlen)
{
	const struct as_option opts[] = {
		{ "block_ms", &cfg->block_ms, 1, 3600000 },
		{ "stall_ms", &cfg->stall_ms, 1, 3600000 },
		{ "stacks", &cfg->stacks, 0, 1 },
		{ "stack_depth", &cfg->stack_depth, 1, AS_STACK_MAX },
		{ "buffer_kb", &cfg->buffer_kb, 4, 4u << 20 },
		{ "enabled", &cfg->enabled, 0, 1 },
		{ "flush_ms", &cfg->flush_ms, 0, 3600000 },
		{ "drain_ms", &cfg->drain_ms, 1, 3600000 },
		{ "follow_exec", &cfg->follow_exec, 0, 1 },
		{ "gate", &cfg->gate, 0, 1 },
		{ "exitcode", &cfg->exitcode, 1, 255 },
		{ "flight_mb", &cfg->flight_mb, 1, 65536 },
		{ "trigger_ms", &cfg->trigger_ms, 0, 3600000 },
		{ "flight_after_ms", &cfg->flight_after_ms, 0, 600000 },
		{ "flight_signal", &cfg->flight_signal, 0, 64 },
		{ "flight_exit", &cfg->flight_exit, 0, 1 },
		{ "ctl_signal", &cfg->ctl_signal, 0, 64 },
		{ "record_argv", &cfg->record_argv, 0, 1 },
		{ "keep_empty", &cfg->keep_empty, 0, 1 },
	};
	while (s && *s) {
		const char *end = strchr(s, ':');
		size_t len = end ? (size_t)(end - s) : strlen(s);
		const char *eq = memchr(s, '=', len);
		if (len == 0) {
			s = end ? end + 1 : NULL;
			continue;
		}
		if (!eq) {
			snprintf(err, errlen, "option '%.*s' has no '=value'", (int)len, s);
			return -1;
		}
		size_t klen = (size_t)(eq - s);
		const char *v = eq + 1;
		size_t vlen = len - klen - 1;
		int known = 0, bad = 0;
		if (klen == 3 && !memcmp(s, "out", 3)) {
			known = 1;
			bad = set_out(cfg, v, vlen);
		}
		if (klen == 8 && !memcmp(s, "suppress", 8)) {
			known = 1;
			bad = set_suppress(cfg, v, vlen);
		}
		if (klen == 4 && !memcmp(s, "mode", 4)) {
			known = 1;
			bad = set_mode(cfg, v, vlen);
		}
		for (size_t i = 0; !known && i < sizeof(opts) / sizeof(opts[0]); i++) {
			if (strlen(opts[i].key) != klen || memcmp(opts[i].key, s, klen))
				continue;
			known = 1;
			unsigned x;
			bad = parse_uint(v, vlen, &x) || x < opts[i].min || x > opts[i].max;
			if (!bad)
				*opts[i].val = x;
			else
				snprintf(err, errlen, "bad value '%.*s' for option '%s' (want an integer %u..%u)",
					 (int)vlen, v, opts[i].key, opts[i].min, opts[i].max);
		}
		if (!known) {
			snprintf(err, errlen, "unknown option '%.*s'", (int)klen, s);
			return -1;
		}
		if (bad) {
			if (klen == 3)
				snprintf(err, errlen, "bad value for option 'out'");
			if (klen == 8 && !memcmp(s, "suppress", 8))
				snprintf(err, errlen, "bad value for option 'suppress' (want a file path)");
			if (klen == 4 && !memcmp(s, "mode", 4))
				snprintf(err, errlen, "bad value '%.*s' for option 'mode' (want normal or flight)",
					 (int)vlen, v);
			return -1;
		}
		s = end ? end + 1 : NULL;
	}
	if (cfg->flight_signal && cfg->flight_signal == cfg->ctl_signal) {
		snprintf(err, errlen, "options 'flight_signal' and 'ctl_signal' name the same signal %u",
			 cfg->ctl_signal);
		return -1;
	}
	return 0;
}
