/* json.h — writing JSON text (output only; traces are msgpack). */
#ifndef ASYNCSHIM_JSON_H
#define ASYNCSHIM_JSON_H

#include <msgpack.h>
#include <stdio.h>

void json_str(FILE *f, const char *s);
void json_strn(FILE *f, const char *s, size_t n);
void json_ms(FILE *f, unsigned long long ns);      /* ns printed as ms, 3 decimals */
void json_object(FILE *f, const msgpack_object *o); /* any msgpack value as JSON */

#endif
