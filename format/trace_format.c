/* trace_format.c — the spelling tables of trace_format.h. */
#include "trace_format.h"

#include <string.h>

#define AS_TRACE_NAME(n) #n,
const char *const as_trace_type_names[AS_T_COUNT] = { AS_TRACE_TYPES(AS_TRACE_NAME) };
const char *const as_trace_key_names[AS_K_COUNT] = { AS_TRACE_KEYS(AS_TRACE_NAME) };
#undef AS_TRACE_NAME

/* each field refers to a listed type and key, or this does not compile */
#define AS_TRACE_FIELD(ty, k) { AS_T_##ty, AS_K_##k },
#define AS_TRACE_OPTION(k) { AS_T_header, AS_K_##k },
static const struct {
	enum as_trace_type type;
	enum as_trace_key key;
} fields[] = { AS_TRACE_FIELDS(AS_TRACE_FIELD) }, options[] = { AS_TRACE_OPTION_KEYS(AS_TRACE_OPTION) };
#undef AS_TRACE_FIELD
#undef AS_TRACE_OPTION

static int find(const char *const *names, int n, const char *s, size_t len)
{
	for (int i = 0; i < n; i++)
		if (strlen(names[i]) == len && !memcmp(names[i], s, len))
			return i;
	return n;
}

enum as_trace_type as_trace_type_of(const char *s, size_t len)
{
	return (enum as_trace_type)find(as_trace_type_names, AS_T_COUNT, s, len);
}

enum as_trace_key as_trace_key_of(const char *s, size_t len)
{
	return (enum as_trace_key)find(as_trace_key_names, AS_K_COUNT, s, len);
}

int as_trace_has_field(enum as_trace_type type, enum as_trace_key key)
{
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (fields[i].type == type && fields[i].key == key)
			return 1;
	return 0;
}

/* the option keys are checked above at compile time; nothing reads them */
int as_trace_is_option(enum as_trace_key key)
{
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
		if (options[i].key == key)
			return 1;
	return 0;
}
